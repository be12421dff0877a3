"""scikit-learn -> ONNX and re-serialization, each validated numerically in its own runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest

from packager.conversion import convert
from packager.errors import UnsupportedConversion, UsageError
from packager.safety import load_pickle

ONNX_MODELS = ["logreg", "forest", "gboost", "histgb", "svc", "knn", "mlp", "linear", "ridge", "forest_regressor", "kmeans", "pca", "columns"]


def _sample_feeds(fixture):
    import pandas as pd

    if fixture.sample.endswith(".parquet"):
        return pd.read_parquet(fixture.sample)
    return np.load(fixture.sample)


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_conversion_reproduces_the_model(fixtures, tmp_path, name):
    fixture = fixtures[name]
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=tmp_path / "pkg")
    report = package.manifest.validation
    assert report["status"] == "passed"
    assert report["samples"] == len(_sample_feeds(fixture))
    # re-run the written file independently of packager and compare with scikit-learn
    import onnxruntime as ort

    session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
    model = load_pickle(fixture.model)
    data = _sample_feeds(fixture)
    if package.manifest.signature.columnar:
        feeds = {c: (data[[c]].to_numpy().astype(str).astype(object) if data[c].dtype.kind in "OUST" else data[[c]].to_numpy(np.float32)) for c in data.columns}
    else:
        feeds = {"X": data.astype(np.float32)}
    first = session.run(None, feeds)[0]
    native = model.predict(data) if hasattr(model, "predict") else model.transform(data)
    if first.dtype.kind in "iuOU":
        assert np.mean(first.reshape(-1) == native.reshape(-1)) >= 0.99
    else:
        np.testing.assert_allclose(first.reshape(native.shape), native, rtol=1e-3, atol=1e-3)


def test_onnx_records_opset_ir_and_dynamic_batch(fixtures, tmp_path):
    import onnx

    package = convert(fixtures["forest"].model, to="onnx", sample=fixtures["forest"].sample, out=tmp_path / "pkg", opset=17)
    conversion = package.manifest.conversion
    assert conversion["opset"]["ai.onnx"] == 17 and conversion["ir_version"] >= 8
    proto = onnx.load(str(package.model_path))
    first_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert not first_dim.HasField("dim_value")  # dynamic batch axis
    assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
    assert not any(n.op_type == "ZipMap" for n in proto.graph.node)


def test_column_pipeline_gets_one_onnx_input_per_column(fixtures, tmp_path):
    import onnx

    package = convert(fixtures["columns"].model, to="onnx", sample=fixtures["columns"].sample, out=tmp_path / "pkg")
    proto = onnx.load(str(package.model_path))
    inputs = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert inputs == {"age": onnx.TensorProto.FLOAT, "income": onnx.TensorProto.FLOAT, "city": onnx.TensorProto.STRING, "plan": onnx.TensorProto.STRING}
    assert package.manifest.signature.columnar


def test_column_pipeline_without_sample_uses_encoder_categories(fixtures, tmp_path):
    package = convert(fixtures["columns"].model, to="onnx", out=tmp_path / "pkg")
    assert package.manifest.validation["status"] == "passed"
    example = json.loads((package.path / "input_example.json").read_text())
    assert set(example["city"][i][0] for i in range(5)) <= {"paris", "lyon", "lille", "nantes"}


@pytest.mark.parametrize("target,suffix", [("pickle", ".pkl"), ("joblib", ".joblib"), ("skops", ".skops")])
def test_reserialization_is_exact(fixtures, tmp_path, target, suffix):
    package = convert(fixtures["histgb"].model, to=target, sample=fixtures["histgb"].sample, out=tmp_path / "pkg")
    assert package.model_path.suffix == suffix
    outputs = package.manifest.validation["outputs"]
    assert {o["name"]: (o["max_abs"], o["agreement"]) for o in outputs} == {"label": (None, 1.0), "probabilities": (0.0, 1.0)}


def test_in_memory_model_and_synthesized_sample(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    package = convert(model, to="onnx", out=tmp_path / "pkg")
    assert package.manifest.source.file is None
    assert package.manifest.signature.inputs[0].shape == (None, 4)
    assert package.manifest.validation["samples"] == 200


def test_sample_with_wrong_width_is_a_usage_error(fixtures, tmp_path):
    np.save(tmp_path / "narrow.npy", np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(UsageError, match="shape \\(5, 3\\), but the model takes 13 features"):
        convert(fixtures["forest"].model, to="onnx", sample=tmp_path / "narrow.npy", out=tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_unsupported_estimator_is_refused_clearly(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.semi_supervised import LabelSpreading

    X, y = load_iris(return_X_y=True)
    with pytest.raises(UnsupportedConversion, match="skl2onnx has no ONNX converter for LabelSpreading"):
        convert(LabelSpreading().fit(X, y), to="onnx", out=tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_manifest_contents(fixtures, tmp_path):
    package = convert(fixtures["logreg"].model, to="onnx", sample=fixtures["logreg"].sample, out=tmp_path / "pkg")
    manifest = json.loads((package.path / "manifest.json").read_text())
    assert manifest["source"]["sha256"] and manifest["source"]["details"]["pickled_with_sklearn"] == "1.9.0"
    assert manifest["versions"]["onnxruntime"] and manifest["versions"]["scikit-learn"] == "1.9.0"
    assert manifest["validation"]["runtime"] == "onnxruntime"
    assert set(manifest["files"]) == {"model.onnx", "input_example.json", "requirements.txt"}
    assert "onnxruntime==" in (package.path / "requirements.txt").read_text()
    from packager.package import sha256_file

    assert manifest["files"]["model.onnx"] == sha256_file(package.model_path)


def test_input_shape_must_agree_with_the_model(fixtures, tmp_path):
    with pytest.raises(UsageError, match="--input-shape gives X shape \\(5,\\), but the model expects \\(13,\\)"):
        convert(fixtures["forest"].model, to="onnx", input_shape="1,5", out=tmp_path / "pkg")
    package = convert(fixtures["forest"].model, to="onnx", input_shape="-1,13", out=tmp_path / "ok")
    assert package.manifest.signature.inputs[0].shape == (None, 13)
