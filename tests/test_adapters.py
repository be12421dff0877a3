"""Adapters as graph edges (issue 22 item 2 leftover): a converter that was a one-line wrapper around another framework's
converter (keras -> onnx/tflite/pb/coreml/mlpackage through TensorFlow's, xgboost/lightgbm -> onnx/pmml through
scikit-learn's) is an ``@adapts`` declaration: the loaded model becomes the other framework's in memory and that
framework's converter runs. The support matrix must not change: the README drift test (tests/test_plugins.py) compares
the README, unchanged in this change, with the generated table; here the rows of the adapted edges are checked one by one
against what the wrappers declared, and one adapted conversion is checked end to end against its source."""

from __future__ import annotations

import numpy as np
import pytest

from packager.errors import PluginError
from packager.matrix import support_matrix
from packager.plugins import adapts, converts, default_registry, load_registry
from tests.test_contract import _module  # one module built in memory and registered in sys.modules (shared helper)

# (source, target) -> (quantization modes, matrix note) as the twelve wrapper converters declared them on main (8ee428c)
WRAPPERS = {
    ("keras", "coreml"): (("fp16", "weights"), "coremltools from a concrete function (.mlmodel)"),
    ("keras", "mlpackage"): (("weights",), "coremltools ML program from a concrete function"),
    ("keras", "onnx"): (("dynamic", "fp16", "static"), "tf2onnx from a tf.function (from_keras is broken on Keras 3)"),
    ("keras", "pb"): ((), "frozen GraphDef from the model's tf.function"),
    ("keras", "tflite"): (("dynamic", "fp16", "static"), "TFLiteConverter; post-training int8 (calibrated) and fp16"),
    ("xgboost", "onnx"): (("dynamic", "fp16", "static"), "onnxmltools' XGBoost converter inside skl2onnx"),
    ("xgboost", "pmml"): ((), "sklearn2pmml (Java, AGPL-3.0)"),
    ("lightgbm", "onnx"): (("dynamic", "fp16", "static"), "onnxmltools' LightGBM converter, double thresholds"),
    ("lightgbm", "pmml"): ((), "sklearn2pmml (Java, AGPL-3.0)"),
    ("lightgbm", "lleaves"): ((), "LLVM-compiled at load (cached by digest)"),
    ("lightgbm", "treelite"): ((), "compiled by tl2cgen at load (cached by digest)"),
    ("xgboost", "treelite"): ((), "compiled by tl2cgen at load (cached by digest)"),
}


def test_the_adapted_edges_keep_the_wrappers_matrix_rows():
    registry = default_registry()
    rows = {(r.source, r.target): r for r in support_matrix(registry)}
    for (source, target), (quantize, note) in WRAPPERS.items():
        edge = registry.conversions[(source, target)]
        assert edge.adapter, f"{source} -> {target} is still a converter of its own"
        to = "tensorflow" if source == "keras" else "sklearn"
        assert edge.func.__qualname__ == registry.conversions[(to, target)].func.__qualname__  # the other framework's runs
        row = rows[(source, target)]
        assert (row.quantize, row.note, row.via) == (quantize, note, ()), (source, target)


def test_an_adapted_conversion_runs_the_adapter_then_the_converter_and_validates_against_the_source(tmp_path):
    """Keras -> ONNX now goes through ``keras_as_graph`` and TensorFlow's converter: the manifest names the adapter, and
    the ONNX file, run here in onnxruntime, gives the Keras model's own outputs on held-out rows. (XGBoost and LightGBM
    files are loaded into their scikit-learn estimators and re-claimed by scikit-learn, so their adapted edges serve the
    matrix and ``--to`` look-ups; the conversion itself runs scikit-learn's edge, as it did with the wrappers.)"""
    keras = pytest.importorskip("keras")
    import onnxruntime as ort
    from sklearn.datasets import load_wine

    from packager.conversion import convert

    X, _ = load_wine(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((13,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")])
    package = convert(model, to="onnx", sample=X[::2], out=tmp_path / "pkg", trust=True)
    assert package.manifest.source.framework == "keras"
    assert package.manifest.conversion["adapter"] == "packager.converters.keras.keras_as_graph"
    assert package.manifest.validation["status"] == "passed" and package.manifest.validation["runtime"] == "onnxruntime"
    session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: X[1::2]})
    assert np.abs(got - model.predict(X[1::2], verbose=0)).max() < 1e-5


def test_an_adapter_to_a_target_its_framework_lacks_is_a_plugin_error_naming_it(monkeypatch):
    @adapts("xgboost", to="sklearn", targets={"tidy22-nowhere": "a format scikit-learn does not reach"})
    def as_sklearn(model):
        return model

    name = _module(monkeypatch, "tidy22_adapter", as_sklearn=as_sklearn)
    with pytest.raises(PluginError) as caught:
        load_registry(["packager.converters.sklearn", "packager.converters.pickles", name])
    assert caught.value.what == (
        "adapter tidy22_adapter.as_sklearn opens xgboost -> tidy22-nowhere, but sklearn has no converter to tidy22-nowhere"
    )


def test_an_adapter_edge_that_is_also_a_converter_is_registered_twice(monkeypatch):
    @adapts("tidy22fw", to="sklearn", targets={"onnx": "through scikit-learn"})
    def as_sklearn(model):
        return model

    @converts("tidy22fw", to="onnx")
    def direct(model, signature, out, options):
        return out

    name = _module(monkeypatch, "tidy22_twice", as_sklearn=as_sklearn, direct=direct)
    twice = r"\('tidy22fw', 'onnx'\) is registered twice \(tidy22_twice.direct and tidy22_twice.as_sklearn -> packager.converters.sklearn"
    with pytest.raises(PluginError, match=twice):
        load_registry(["packager.converters.sklearn", "packager.converters.pickles", "packager.converters.onnx", name])


def test_an_adapter_must_take_one_model(monkeypatch):
    @adapts("tidy22fw", to="sklearn", targets={"onnx": "n/a"})
    def wrong(model, signature):
        return model

    name = _module(monkeypatch, "tidy22_wrong", wrong=wrong)
    with pytest.raises(PluginError, match="tidy22_wrong.wrong does not fit the contract of an adapter func"):
        load_registry(["packager.converters.sklearn", "packager.converters.pickles", name])
