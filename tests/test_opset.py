"""``--opset`` (issue 22's proof that an option is written in the request and where it is used, nowhere else): it
reaches the convert worker in the sandbox child and the ONNX file is written at that opset (read back with onnx)."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import pytest
from click.testing import CliRunner


@pytest.fixture(scope="module")
def iris_file(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("opset")
    X, y = load_iris(return_X_y=True)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    np.save(folder / "rows.npy", X[::5].astype(np.float32))
    return path, folder / "rows.npy"


def _opsets(package) -> dict[str, int]:
    model = onnx.load(str(package / "model.onnx"))
    return {o.domain or "ai.onnx": o.version for o in model.opset_import}


def test_opset_from_the_command_line_reaches_the_written_model(iris_file, tmp_path):
    from packager.cli import main

    model, rows = iris_file
    result = CliRunner().invoke(main, ["convert", str(model), "--opset", "13,ai.onnx.ml=2", "--sample", str(rows), "-o", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    opsets = _opsets(tmp_path / "p")
    assert opsets["ai.onnx"] == 13 and opsets["ai.onnx.ml"] <= 2  # skl2onnx writes the ML domain's lowest opset that suffices


def test_opset_through_the_api_and_a_plain_number(iris_file, tmp_path):
    import packager

    model, rows = iris_file
    package = packager.convert(model, to="onnx", opset="15", sample=rows, out=tmp_path / "p")
    assert _opsets(package.path)["ai.onnx"] == 15 == package.manifest.conversion["opset"]["ai.onnx"]
    default = packager.convert(model, to="onnx", sample=rows, out=tmp_path / "d")
    assert _opsets(default.path)["ai.onnx"] > 15  # without --opset the converter's own (skl2onnx's latest tested)


def test_an_opset_that_is_not_one_is_a_usage_error(iris_file, tmp_path):
    from packager.cli import main

    model, rows = iris_file
    result = CliRunner().invoke(main, ["convert", str(model), "--opset", "seventeen", "-o", str(tmp_path / "p")])
    assert result.exit_code != 0 and not (tmp_path / "p").exists()
    assert "--opset 'seventeen' is not an opset" in str(result.exception or result.output)
