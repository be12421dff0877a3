"""ONNX external data, wherever a tensor can be (issue 21 finding 2): a Constant with ``sparse_value`` and a Constant
inside a model-local function named a ``secret.env`` beside the model; on 826a172 `inspect` and `predict` exited 0 and
the predictions decoded to the secret. The check is now one walk over the protobuf message; the places tested below
include ones no list named (training info, a subgraph of a function's node, sparse initializer indices)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packager.errors import UnsafeModelError
from tests.conftest import run_cli

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from packager.safety.onnx import check_onnx  # noqa: E402

SECRET = b"API_KEY=s3cr3t-0f-the-h0st-xyzw!"  # 32 bytes: 8 float32 "weights"
OPSET = [helper.make_opsetid("", 17)]
IO = (
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
)


def _external(name: str) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[8], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "secret.env"), ("offset", "0"), ("length", str(len(SECRET)))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def _save(folder: Path, name: str, nodes: list, **model: object) -> Path:
    (folder / "secret.env").write_bytes(SECRET)
    opsets = model.pop("opsets", OPSET)
    proto = helper.make_model(helper.make_graph(nodes, "g", *IO), opset_imports=opsets, ir_version=9, **model)
    (folder / name).write_bytes(proto.SerializeToString())
    return folder / name


def sparse_constant(folder: Path) -> Path:
    sparse = helper.make_sparse_tensor(_external("v"), numpy_helper.from_array(np.arange(8, dtype=np.int64), "i"), [8])
    nodes = [helper.make_node("Constant", [], ["c"], sparse_value=sparse), helper.make_node("Add", ["x", "c"], ["y"])]
    return _save(folder, "sparse_constant.onnx", nodes)


def function_constant(folder: Path) -> Path:
    leak = helper.make_function("local", "leak", [], ["c"], [helper.make_node("Constant", [], ["c"], value=_external("w"))], OPSET)
    nodes = [helper.make_node("leak", [], ["c"], domain="local"), helper.make_node("Add", ["x", "c"], ["y"])]
    return _save(folder, "function_constant.onnx", nodes, functions=[leak], opsets=[*OPSET, helper.make_opsetid("local", 1)])


@pytest.mark.parametrize("build", [sparse_constant, function_constant])
def test_inspect_and_predict_refuse_the_unchecked_places_and_never_decode_the_secret(tmp_path, build):
    model = build(tmp_path)
    np.save(tmp_path / "zeros.npy", np.zeros((2, 8), np.float32))
    for command in (["inspect", str(model)], ["predict", str(model), str(tmp_path / "zeros.npy"), "-o", str(tmp_path / "out.npy")]):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 5, (command[0], result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "is read from the external file 'secret.env'" in lines[0], lines
    assert not (tmp_path / "out.npy").exists()
    assert all(SECRET not in p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "secret.env")


def _graph_with(tensor_node: object) -> object:
    return helper.make_graph([tensor_node], "sub", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [8])])


PLACES = {
    "initializer": lambda: {"graph_initializer": [_external("w")]},
    "sparse_initializer_indices": lambda: {
        "sparse": helper.make_sparse_tensor(numpy_helper.from_array(np.ones(8, np.float32), "v"), _external("i"), [8])
    },
    "attribute_tensors": lambda: {"node": helper.make_node("Foo", [], ["c"], domain="", tensors=[_external("w")])},
    "subgraph_of_if": lambda: {
        "node": helper.make_node(
            "If", ["b"], ["c"], then_branch=_graph_with(helper.make_node("Constant", [], ["c"], value=_external("w"))),
            else_branch=_graph_with(helper.make_node("Constant", [], ["c"], value=_external("w2"))),
        )
    },
    "function_subgraph": lambda: {"function_graph": True},
    "training_info": lambda: {"training": True},
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_external_data_is_found_wherever_the_schema_holds_a_tensor(tmp_path, place):
    spec = PLACES[place]()
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", *IO)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=9)
    if "graph_initializer" in spec:
        model.graph.initializer.extend(spec["graph_initializer"])
    if "sparse" in spec:
        model.graph.sparse_initializer.append(spec["sparse"])
    if "node" in spec:
        model.graph.node.append(spec["node"])
    if "function_graph" in spec:
        inner = helper.make_node("Loop", ["", ""], ["c"], body=_graph_with(helper.make_node("Constant", [], ["c"], value=_external("w"))))
        model.functions.append(helper.make_function("local", "f", [], ["c"], [inner], OPSET))
    if "training" in spec:
        info = model.training_info.add()
        info.initialization.CopyFrom(helper.make_graph([], "init", [], [], [_external("w")]))
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="external file 'secret.env'"):
        check_onnx(tmp_path / "m.onnx")


def test_a_model_with_every_tensor_inside_passes(tmp_path):
    weight = numpy_helper.from_array(np.ones(8, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", *IO, [weight])
    (tmp_path / "ok.onnx").write_bytes(helper.make_model(graph, opset_imports=OPSET, ir_version=9).SerializeToString())
    check_onnx(tmp_path / "ok.onnx")
