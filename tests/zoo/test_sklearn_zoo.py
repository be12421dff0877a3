"""The zoo's scikit-learn models through packager, each ONNX file re-checked in onnxruntime against the source model
on held-out rows (not only packager's own report)."""
from __future__ import annotations

import numpy as np
import pytest

from packager.conversion import convert
from packager.errors import NotQuantizable, UnsupportedConversion
from tests.zoo.sklearn_models import BUILDERS, HELD_OUT

pytestmark = pytest.mark.zoo

FP32 = ["scaler_logreg", "mlp_classifier", "mlp_regressor", "linear_regression", "svc", "pca_logreg", "random_forest", "tfidf_logreg",
        "kmeans64", "minibatch_kmeans", "calibrated_linear_svc", "grid_search", "randomized_search", "isolation_forest",
        "local_outlier_factor", "one_class_svm"]
INT8 = ["scaler_logreg", "mlp_classifier", "mlp_regressor", "linear_regression", "pca_logreg"]


@pytest.fixture(scope="module")
def zoo():
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = BUILDERS[name]()
        return cache[name]
    return get


def _onnx_outputs(path, X):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = np.asarray(X, dtype=object).reshape(-1, 1) if session.get_inputs()[0].type == "tensor(string)" else np.asarray(X, np.float32)
    return session.run(None, {name: feed})


def _check_against_source(model, X, outputs, *, min_agreement=1.0, atol=1e-4, max_relative=1e-4):
    """First output vs predict (agreement for labels, error relative to the spread for regression); a classifier's
    second output vs predict_proba (max abs diff)."""
    first = outputs[0].reshape(-1)
    expected = model.predict(X)
    if expected.dtype.kind in "iuOUb":
        assert np.mean(first == expected) >= min_agreement, np.mean(first == expected)
    else:
        assert np.abs(first - expected).max() <= max_relative * np.ptp(expected), (np.abs(first - expected).max(), np.ptp(expected))
    if hasattr(model, "predict_proba") and len(outputs) > 1:
        assert np.abs(outputs[1] - model.predict_proba(X)).max() <= atol


@pytest.mark.parametrize("name", FP32)
def test_onnx_reproduces_the_source_on_held_out_rows(zoo, tmp_path, name):
    built = zoo(name)
    package = convert(built.model, to="onnx", sample=built.X_test, out=tmp_path / "pkg")
    assert package.manifest.validation["status"] == "passed"
    _check_against_source(built.model, built.X_test, _onnx_outputs(package.model_path, built.X_test))


@pytest.mark.parametrize("mode", ["dynamic", "static", "fp16"])
@pytest.mark.parametrize("name", INT8)
def test_quantized_onnx_stays_close_on_held_out_rows(zoo, tmp_path, name, mode):
    """StandardScaler -> LogisticRegression failed here with "Unable to find data type for weight_name='multiplied'"
    (the ai.onnx.ml Scaler output was untyped)."""
    built = zoo(name)
    package = convert(built.model, to="onnx", quantize=mode, sample=built.X_test, calibration=built.X_test if mode == "static" else None,
                      out=tmp_path / "pkg")
    assert package.manifest.quantization.applied and package.manifest.validation["status"] == "passed"
    outputs = _onnx_outputs(package.model_path, built.X_test)
    if mode == "fp16":
        _check_against_source(built.model, built.X_test, outputs, atol=5e-3, max_relative=2e-3)
    else:
        _check_against_source(built.model, built.X_test, outputs, min_agreement=0.98, atol=0.15, max_relative=0.02)


def test_scaler_logreg_quantizes_without_a_sample(zoo, tmp_path):
    """Synthetic rows come from the scaler's statistics: standard-normal rows saturated every probability and int8
    flipped them (max diff 1.0)."""
    package = convert(zoo("scaler_logreg").model, to="onnx", quantize="dynamic", out=tmp_path / "pkg")
    assert package.manifest.validation["status"] == "passed"


@pytest.mark.parametrize("name", ["random_forest", "svc"])
def test_ml_operator_graphs_are_not_quantizable_and_auto_says_why(zoo, tmp_path, name):
    built = zoo(name)
    with pytest.raises(NotQuantizable, match="no operator with int8 weights"):
        convert(built.model, to="onnx", quantize="dynamic", sample=built.X_test, out=tmp_path / "int8")
    package = convert(built.model, to="onnx", quantize="auto", sample=built.X_test, out=tmp_path / "auto")
    quantization = package.manifest.quantization
    assert (
        not quantization.applied and quantization.reason.startswith("kept fp32") and "no operator with int8 weights" in quantization.reason
    )
    assert [a["mode"] for a in quantization.attempts if not a["kept"]][:1] == ["dynamic"]


def test_text_pipeline_takes_one_string_column(zoo, tmp_path):
    import onnx

    built = zoo("tfidf_logreg")
    sample = tmp_path / "held_out.txt"
    sample.write_text("\n".join(HELD_OUT) + "\n\n", encoding="utf-8")
    package = convert(built.model, to="onnx", sample=sample, out=tmp_path / "onnx")
    assert [s.to_dict() for s in package.manifest.signature.inputs] == [{"name": "text", "dtype": "str", "shape": [None, 1]}]
    assert package.manifest.validation["samples"] == len(HELD_OUT)
    assert onnx.load(str(package.model_path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.STRING
    # non-ASCII words ("ÉTÉ", "café") tokenized and lower-cased as scikit-learn does (the default RE2 \\w dropped them)
    assert {"café", "été"} <= set(built.model.steps[0][1].vocabulary_)
    outputs = _onnx_outputs(package.model_path, HELD_OUT)
    assert np.abs(outputs[1] - built.model.predict_proba(HELD_OUT)).max() < 1e-5


@pytest.mark.parametrize("target", ["skops", "pickle", "joblib"])
def test_text_pipeline_reserializes_with_synthesized_sentences(zoo, tmp_path, target):
    package = convert(zoo("tfidf_logreg").model, to=target, out=tmp_path / "pkg")
    assert package.manifest.validation["status"] == "passed" and package.manifest.validation["samples"] == 200


def test_text_sample_with_two_text_columns_is_a_clear_usage_error(zoo, tmp_path):
    import pandas as pd

    from packager.errors import UsageError

    frame = pd.DataFrame({"title": HELD_OUT, "body": HELD_OUT})
    with pytest.raises(UsageError, match="one text column, but the sample has 2 text columns"):
        convert(zoo("tfidf_logreg").model, to="onnx", sample=frame, out=tmp_path / "pkg")


@pytest.mark.parametrize("sample", [True, False])
def test_categorical_histgradientboosting_validates_on_its_columns(zoo, tmp_path, sample):
    built = zoo("hgb_categorical")
    package = convert(built.model, to="skops", sample=built.X_test if sample else None, out=tmp_path / "pkg", trust=True)
    signature = package.manifest.signature
    assert signature.columnar and {s.name: s.dtype for s in signature.inputs}["alcohol_band"] == "str"
    assert package.manifest.validation["status"] == "passed"


def test_categorical_histgradientboosting_converts_to_onnx_and_a_pipeline_of_one_names_the_reason(zoo, tmp_path):
    """Issue 26 point 12: the model alone converts (converters/sklearn_hgb_onnx.py), validated on its held-out rows; inside
    a Pipeline skl2onnx still gets it, and the refusal names the columns and the way out. An old ai.onnx.ml is refused."""
    from sklearn.pipeline import make_pipeline

    built = zoo("hgb_categorical")
    package = convert(built.model, to="onnx", sample=built.X_test, out=tmp_path / "pkg", trust=True)
    assert package.manifest.validation["status"] == "passed" and package.manifest.conversion["opset"]["ai.onnx.ml"] == 5
    with pytest.raises(UnsupportedConversion, match=r"needs ONNX opset 13\+ and ai.onnx.ml 5 .*asked: 21, ai.onnx.ml 3"):
        convert(built.model, to="onnx", out=tmp_path / "old", trust=True, opset="21,ai.onnx.ml=3")
    with pytest.raises(UnsupportedConversion, match=r"categorical features \(alcohol_band, hue_band\)"):
        convert(make_pipeline(built.model), to="onnx", sample=built.X_test, out=tmp_path / "piped", trust=True)
    assert not (tmp_path / "old").exists() and not (tmp_path / "piped").exists()


def test_kmeans_fitted_on_float64_reserializes(zoo, tmp_path):
    package = convert(zoo("kmeans64").model, to="pickle", out=tmp_path / "pkg")
    assert package.manifest.validation["status"] == "passed"


def test_search_wrappers_say_what_was_converted(zoo, tmp_path):
    package = convert(zoo("grid_search").model, to="onnx", out=tmp_path / "pkg")
    assert package.manifest.conversion["converted"] == "best_estimator_ (Pipeline) of GridSearchCV"


def test_transformed_target_regressor_refusal_names_the_wrapper(zoo, tmp_path):
    with pytest.raises(UnsupportedConversion, match="no converter for TransformedTargetRegressor.*transformed target"):
        convert(zoo("transformed_target").model, to="onnx", out=tmp_path / "pkg")


def test_isolation_forest_gets_ml_opset_3_and_opset_takes_domains(zoo, tmp_path):
    built = zoo("isolation_forest")
    package = convert(built.model, to="onnx", sample=built.X_test, out=tmp_path / "auto")
    assert package.manifest.conversion["opset"]["ai.onnx.ml"] == 3
    package = convert(built.model, to="onnx", sample=built.X_test, out=tmp_path / "given", opset="17,ai.onnx.ml=3")
    assert package.manifest.conversion["opset"] == {"ai.onnx": 17, "ai.onnx.ml": 3}
