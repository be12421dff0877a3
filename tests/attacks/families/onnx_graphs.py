"""ONNX files that reach outside themselves: an initializer read from an external file named by an
absolute path or by ``../`` (the file's bytes become weights, so outputs leak it), and nodes in custom
operator domains. No payload writes the marker: these read, so ``runs_code`` is False (the sandbox's
read-only root does not hide an ordinary file; the static check is what refuses them)."""
from __future__ import annotations

from pathlib import Path

from tests.attacks.build_corpus import Attack


def _model(out: Path, name: str, *, location: str | None = None, domain: str = "") -> Path:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "W")
    if location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "64")):
            weight.external_data.add(key=key, value=value)
    node = helper.make_node("MatMul" if not domain else "Evil", ["x", "W"], ["y"], domain=domain, name="n0")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path = out / name
    path.write_bytes(helper.make_model(graph, opset_imports=opsets, ir_version=9).SerializeToString())
    return path


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    secret = out / "secret.bin"
    secret.write_bytes(b"\x00\x00\x80\x3f" * 16)  # 16 float32 ones: a well-formed "weight" the runtime would accept
    cases = {
        "external_absolute.onnx": {"location": str(secret)},
        "external_traversal.onnx": {"location": "../onnx_graphs/secret.bin"},
        "external_etc_passwd.onnx": {"location": "/etc/passwd"},
        "custom_domain_op.onnx": {"domain": "com.attacker"},
    }
    return [Attack(name, _model(out, name, **kwargs), "unsafe", runs_code=False) for name, kwargs in cases.items()]
