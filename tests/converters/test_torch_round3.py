"""Issue 26 points 8 and 9 through the CLI as a new user runs it: a traced torch model with two inputs (13 wine
features and an int64 band id) and a dict output; every verdict re-checked here in onnxruntime against the module."""
from __future__ import annotations

import json

import numpy as np
import pytest

from packager.errors import UsageError
from tests.conftest import invoke_cli

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    from tests.zoo.dl_round3 import save_traced_dict

    folder = tmp_path_factory.mktemp("two-inputs")
    path, held_out, expected = save_traced_dict(folder)
    return path, folder / "wine_two_inputs.npz", held_out, expected


def _ort(path, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()}), strict=True))


def test_dict_outputs_are_flattened_and_named_by_their_keys(two_inputs, tmp_path):
    """826a172: exit 7, "try another --opset" (onnx) and "use --to onnx" (mlpackage), both wrong."""
    path, npz, held_out, expected = two_inputs
    done = invoke_cli("convert", str(path), "--to", "onnx", "--to", "mlpackage", "--sample", str(npz), "-o", str(tmp_path / "o"), "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["target"]: r for r in json.loads(done.stdout)}
    assert rows["onnx"]["status"] == "passed" and rows["onnx"]["max_abs_diff"] < 1e-5
    assert rows["mlpackage"]["status"] == "structure-checked, not executed"
    got = _ort(rows["onnx"]["path"], held_out)
    assert list(got) == ["logits", "proba"]
    for name in ("logits", "proba"):
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
    manifest = json.loads((tmp_path / "o" / "onnx" / "manifest.json").read_text())
    assert [o["name"] for o in manifest["signature"]["outputs"]] == ["logits", "proba"]


class Spectrum(torch.nn.Module):
    """rfft has no TorchScript-exporter symbolic; torch.export (dynamo) exports it."""

    def forward(self, x):
        return torch.fft.rfft(x).abs()


def test_a_traced_file_the_exporter_cannot_take_names_the_reason_and_a_hint_that_works(tmp_path):
    """826a172: "try another --opset" (no opset has aten::fft_rfft) and dynamo's reason cut to its banner."""
    from packager.conversion import convert

    x = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    torch.jit.save(torch.jit.trace(Spectrum(), torch.from_numpy(x[:2])), tmp_path / "spectrum.pt")
    done = invoke_cli(
        "convert", str(tmp_path / "spectrum.pt"), "--to", "onnx", "--sample", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o")
    )
    assert done.returncode == 7
    (line,) = done.stderr.strip().splitlines()
    assert "Exporting the operator 'aten::fft_rfft' to ONNX opset version" in line and "is not supported" in line
    assert "step 1/3" not in line and "--opset" not in line and "nn.Module" in line
    package = convert(Spectrum(), to="onnx", sample=x, out=tmp_path / "api")  # the hint, followed
    assert package.manifest.validation["status"] == "passed"
    got = _ort(package.path / "model.onnx", {"input_0": x})["output_0"]
    np.testing.assert_allclose(got, Spectrum()(torch.from_numpy(x)).numpy(), atol=1e-4)


class Nested(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

    def forward(self, x):
        return {"scores": self.a(x), "aux": (self.b(x), torch.sigmoid(self.b(x)))}


def test_nested_outputs_of_a_python_module_become_named_onnx_outputs(tmp_path):
    from packager.conversion import convert

    torch.manual_seed(0)
    model = Nested().eval()
    x = np.random.default_rng(1).standard_normal((20, 4)).astype(np.float32)
    package = convert(model, to="onnx", sample=x, out=tmp_path / "p")
    got = _ort(package.path / "model.onnx", {"input_0": x})
    assert list(got) == ["scores", "aux_0", "aux_1"]
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    np.testing.assert_allclose(got["aux_1"], out["aux"][1].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["scores"], out["scores"].numpy(), atol=1e-5)


def test_input_shape_takes_a_dtype():
    from packager.signature import ShapeSpec, parse_input_specs  # new in issue 26: an ImportError on 826a172

    assert parse_input_specs("x:1,13;band:1:int64") == {"x": ShapeSpec((1, 13)), "band": ShapeSpec((1,), "int64")}
    assert parse_input_specs("-1,8:int32") == {"input_0": ShapeSpec((None, 8), "int32")}
    with pytest.raises(UsageError, match="'int65' is not a dtype.*band:1:int64"):
        parse_input_specs("band:1:int65")


def test_input_problems_name_the_input_and_the_hint_works(two_inputs, tmp_path):
    """826a172: each ended in exit 4 "not a usable fitted model; re-export it"."""
    import pandas as pd

    path, npz, held_out, expected = two_inputs
    float_band = invoke_cli("convert", str(path), "--to", "onnx", "--input-shape", "x:1,13;band:1", "-o", str(tmp_path / "a"))
    assert float_band.returncode == 2, float_band.stderr
    assert "band float32 (8,)" in float_band.stderr and "'indices'" in float_band.stderr and "re-export" not in float_band.stderr
    assert "--input-shape 'x:1,13:float32;band:1:float32'" in float_band.stderr  # the user's own shapes, dtypes to edit
    typed = invoke_cli("convert", str(path), "--to", "onnx", "--input-shape", "x:1,13;band:1:int64", "-o", str(tmp_path / "b"), "--json")
    assert typed.returncode == 0, typed.stderr
    (row,) = json.loads(typed.stdout)
    assert row["status"] == "passed" and row["data"] == "synthetic"
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert {s["name"]: s["dtype"] for s in manifest["signature"]["inputs"]} == {"x": "float32", "band": "int64"}
    table = pd.DataFrame({**{f"f{i}": held_out["x"][:, i] for i in range(13)}, "band": held_out["band"]})
    table.to_parquet(tmp_path / "rows.parquet")
    parquet = invoke_cli("convert", str(path), "--to", "onnx", "--sample", str(tmp_path / "rows.parquet"), "-o", str(tmp_path / "c"))
    assert parquet.returncode == 2
    (line,) = parquet.stderr.strip().splitlines()
    assert "forward() takes 2 inputs (x, band) but the sample gives 1 (input_0 float32 (36, 14))" in line
    assert "np.savez('rows.npz', x=..., band=...)" in line  # followed in test_dict_outputs_are_flattened_and_named_by_their_keys
