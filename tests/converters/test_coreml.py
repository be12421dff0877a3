"""Core ML: refused clearly for scikit-learn > 1.5.1; the structure check reads real Core ML specs."""
from __future__ import annotations

import pytest

from packager.conversion import convert
from packager.errors import UnsupportedConversion
from packager.inspection import inspect


def test_sklearn_above_1_5_1_gets_one_clear_error(fixtures, tmp_path):
    with pytest.raises(UnsupportedConversion, match=r"above scikit-learn 1\.5\.1 \(installed: 1\.9\.0\).*convert to ONNX instead"):
        convert(fixtures["logreg"].model, to="coreml", out=tmp_path / "pkg", trust=True)
    assert not (tmp_path / "pkg").exists()


def test_structure_check_reads_a_real_mlmodel(tmp_path):
    import coremltools as ct
    import numpy as np
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(2))])
    builder.add_inner_product(
        "dense", W=np.ones((2, 3)), b=np.zeros(2), input_channels=3, output_channels=2, has_bias=True, input_name="x", output_name="y"
    )
    path = tmp_path / "tiny.mlmodel"
    ct.models.MLModel(builder.spec).save(str(path))
    info = inspect(path)
    assert info["format"] == "coreml" and info["inputs"] == ["x"] and info["outputs"] == ["y"]
    assert info["model_type"] == "neuralNetwork" and info["spec_version"] >= 1

    from packager.converters.coreml import CoreMLStructureCheck

    checked = CoreMLStructureCheck().check(path, None)
    assert "only on macOS" in checked["reason"]
