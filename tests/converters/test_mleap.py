"""scikit-learn -> MLeap Bundle.ML: round trip where mleap reads it back, structure check otherwise."""
from __future__ import annotations

import json
import zipfile

import pytest

from packager.conversion import convert
from packager.errors import UnsupportedConversion


def test_logistic_regression_round_trips(fixtures, tmp_path):
    package = convert(
        fixtures["digits_linear"].model, to="mleap", sample=fixtures["digits_linear"].sample, out=tmp_path / "pkg", trust=True
    )
    report = package.manifest.validation
    assert report["status"] == "passed"
    probabilities = next(o for o in report["outputs"] if o["name"] == "probabilities")
    assert probabilities["max_abs"] < 1e-6
    with zipfile.ZipFile(package.model_path) as zf:
        bundle = json.loads(zf.read("bundle.json"))
    assert bundle["format"] == "json"


def test_forest_is_structure_checked_and_says_so(fixtures, tmp_path):
    package = convert(fixtures["forest"].model, to="mleap", sample=fixtures["forest"].sample, out=tmp_path / "pkg", trust=True)
    report = package.manifest.validation
    assert report["status"] == "structure-checked, not executed"
    assert "random_forest_classifier" in report["details"]["nodes"].values()
    assert "cannot read this estimator back" in report["details"]["reason"]


def test_column_pipelines_are_refused(fixtures, tmp_path):
    with pytest.raises(UnsupportedConversion, match="no ColumnTransformer"):
        convert(fixtures["columns"].model, to="mleap", out=tmp_path / "pkg", trust=True)


def test_mlinit_parameters_are_read_from_the_signature_not_co_varnames():
    """Issue 26: ``__code__.co_varnames`` lists locals too, and a wrapped mlinit has none of its parameters there."""
    import functools

    from converters.mleap import _parameters  # new in issue 26

    def mlinit(self, input_features, prediction_column):
        feature_names = [input_features]  # a local, not a parameter
        return feature_names

    def takes(self, input_features, prediction_column, feature_names=None):
        return feature_names

    wrapped = functools.wraps(takes)(lambda *args, **kwargs: takes(*args, **kwargs))
    assert "feature_names" in mlinit.__code__.co_varnames and "feature_names" not in _parameters(mlinit)
    assert "feature_names" not in wrapped.__code__.co_varnames and "feature_names" in _parameters(wrapped)
    assert _parameters(len) == {"obj"}
