"""XGBoost, LightGBM and CatBoost: their estimators (alone and in ColumnTransformer pipelines over pandas columns) and their
native files convert to ONNX, PMML and native files; every artifact is re-checked here in its own runtime (onnxruntime,
JPMML, the library) against ``model.predict`` on float64 held-out rows, not only through packager's report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from packager.conversion import convert
from packager.errors import InputFileError, UnsupportedConversion
from packager.formats import detect_format
from tests.conftest import invoke_cli, run_cli

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
cb = pytest.importorskip("catboost")
ort = pytest.importorskip("onnxruntime")


def _split(frame: pd.DataFrame, target: pd.Series):
    from sklearn.model_selection import train_test_split

    return train_test_split(frame, target, test_size=0.25, random_state=0)


def _mixed(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """A string column binned from a numeric one (terciles), beside the numeric columns."""
    mixed = frame.copy()
    mixed["band"] = pd.qcut(mixed.pop(column), 3, labels=["low", "mid", "high"]).astype(str)
    return mixed


def _pipeline(estimator, numeric: list[str], scale: bool = True):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = StandardScaler() if scale else "passthrough"
    columns = ColumnTransformer([("num", numbers, numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["band"])])
    return make_pipeline(columns, estimator)


def _onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def _column_feeds(path, frame: pd.DataFrame) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    kinds = {i.name: i.type for i in session.get_inputs()}
    return {name: (frame[[name]].to_numpy().astype(object) if kind == "tensor(string)" else
                   frame[[name]].to_numpy().astype(np.float64 if kind == "tensor(double)" else np.float32)) for name, kind in kinds.items()}


# ---------------------------------------------------------------- ONNX, alone and in pipelines

def test_lightgbm_regressor_onnx_keeps_float64_tree_paths(tmp_path):
    """A float32 graph (onnxmltools as it comes: float32 input and thresholds) moves held-out diabetes rows across
    LightGBM's double thresholds (measured: 3 of 111 rows off by up to 11.0); packager's double graph moves none."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=1)
    model = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(X_train, y_train)
    expected = model.predict(X_test)
    package = convert(model, to="onnx", sample=X_test, out=tmp_path / "lgbr")
    assert package.validation["status"] == "passed"
    session = ort.InferenceSession(str(package.model_path))
    assert session.get_inputs()[0].type == "tensor(double)"
    (got,) = session.run(None, {"X": X_test.to_numpy(np.float64)})
    assert np.abs(got.reshape(-1) - expected).max() < 1e-3  # float32 output of a double sum: ~1e-5
    reference = convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, 10]))], target_opset=15)
    (float32,) = ort.InferenceSession(reference.SerializeToString()).run(None, {"X": X_test.to_numpy(np.float32)})
    assert np.abs(float32.reshape(-1) - expected).max() > 1.0  # the cast does move rows on this split


@pytest.mark.parametrize("make, scale", [(lambda: xgb.XGBClassifier(n_estimators=20, max_depth=3), True),
                                         (lambda: lgb.LGBMClassifier(n_estimators=20, verbose=-1), True)], ids=["xgboost", "lightgbm"])
def test_classifier_in_column_pipeline_onnx(tmp_path, make, scale):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    X = _mixed(X, "alcohol").rename(columns=lambda c: c.replace("/", "_"))  # skl2onnx renames "od280/od315..." inputs
    X_train, X_test, y_train, _ = _split(X, y)
    model = _pipeline(make(), [c for c in X.columns if c != "band"], scale).fit(X_train, y_train)
    package = convert(model, to="onnx", sample=X_test, out=tmp_path / "pipe")
    assert package.validation["status"] == "passed"
    label, probabilities = _onnx(package.model_path, _column_feeds(package.model_path, X_test))
    assert (label.reshape(-1) == model.predict(X_test)).all()
    assert np.abs(probabilities - model.predict_proba(X_test)).max() < 1e-4


def test_xgboost_regressor_alone_onnx(tmp_path):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, _ = _split(X, y)
    model = xgb.XGBRegressor(n_estimators=30, max_depth=3).fit(X_train, y_train)
    package = convert(model, to="onnx", sample=X_test, out=tmp_path / "xgbr")
    (got,) = _onnx(package.model_path, {"X": X_test.to_numpy(np.float32)})  # XGBoost itself reads float32
    expected = model.predict(X_test)
    assert np.abs(got.reshape(-1) - expected).max() < 1e-4 * (expected.max() - expected.min())


def test_xgboost_categorical_splits_refused_with_reason(tmp_path):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :5].assign(band=pd.qcut(X["mean texture"], 3, labels=["low", "mid", "high"]))
    model = xgb.XGBClassifier(n_estimators=5, enable_categorical=True, tree_method="hist").fit(X, y)
    with pytest.raises(UnsupportedConversion, match="onnxmltools .* cannot convert XGBoost categorical splits"):
        from packager.converters.sklearn import sklearn_to_onnx

        from packager.conversion import ConvertOptions
        from packager.signature import Signature, TensorSpec

        sklearn_to_onnx(model, Signature((TensorSpec("X", "float32", (None, 6)),)), tmp_path, ConvertOptions())


def test_catboost_file_to_onnx_through_the_cli(tmp_path):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    model = cb.CatBoostClassifier(iterations=30, verbose=0, allow_writing_files=False).fit(X, y)
    model.save_model(str(tmp_path / "model.cbm"))
    np.save(tmp_path / "rows.npy", X[:100].astype(np.float32))
    done = invoke_cli("convert", str(tmp_path / "model.cbm"), "--to", "onnx", "--sample", str(tmp_path / "rows.npy"),
                   "-o", str(tmp_path / "pkg"))
    assert done.returncode == 0, done.stderr
    label, probabilities = _onnx(tmp_path / "pkg" / "model.onnx", {"X": X.astype(np.float32)})
    assert (label.reshape(-1) == model.predict(X)).all()
    assert np.abs(probabilities - model.predict_proba(X)).max() < 1e-5


def test_catboost_categorical_onnx_refused_with_the_exporters_reason(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X = _mixed(X, "petal width (cm)")
    model = cb.CatBoostClassifier(iterations=10, verbose=0, allow_writing_files=False, cat_features=["band"]).fit(X, y)
    with pytest.raises(UnsupportedConversion, match="does yet not support categorical features"):
        convert(model, to="onnx", sample=X, out=tmp_path / "cat")
    assert convert(model, to="catboost", sample=X, out=tmp_path / "cbm").validation["status"] == "passed"


# ---------------------------------------------------------------- native files: sources and targets

def test_native_files_are_detected_by_content(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    booster = xgb.XGBClassifier(n_estimators=3).fit(X, y)
    booster.save_model(str(tmp_path / "a.json"))
    booster.save_model(str(tmp_path / "a.ubj"))
    lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(str(tmp_path / "a.txt"))
    cb.CatBoostRegressor(iterations=3, verbose=0, allow_writing_files=False).fit(X, y).save_model(str(tmp_path / "a.cbm"))
    for name, fmt in {"a.json": "xgboost-json", "a.ubj": "xgboost-ubj", "a.txt": "lightgbm", "a.cbm": "catboost"}.items():
        renamed = tmp_path / f"model-{fmt}.bin"
        renamed.write_bytes((tmp_path / name).read_bytes())
        assert detect_format(renamed) == fmt


@pytest.mark.parametrize("save, name", [(lambda m, p: m.save_model(p), "model.json"), (lambda m, p: m.save_model(p), "model.ubj")])
def test_xgboost_file_converts_through_the_cli(tmp_path, save, name):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    save(model, str(tmp_path / name))
    np.save(tmp_path / "rows.npy", X[:120].astype(np.float32))
    done = invoke_cli("convert", str(tmp_path / name), "--to", "onnx", "--sample", str(tmp_path / "rows.npy"), "-o", str(tmp_path / "pkg"))
    assert done.returncode == 0, done.stderr
    label, probabilities = _onnx(tmp_path / "pkg" / "model.onnx", {"X": X.astype(np.float32)})
    assert (label.reshape(-1) == model.predict(X)).all()
    assert np.abs(probabilities - model.predict_proba(X)).max() < 1e-5


def test_lightgbm_text_file_converts_and_predicts_through_the_cli(tmp_path):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    model = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(X, y)
    model.booster_.save_model(str(tmp_path / "model.txt"))
    np.save(tmp_path / "rows.npy", X)
    done = invoke_cli("convert", str(tmp_path / "model.txt"), "--to", "onnx", "--sample", str(tmp_path / "rows.npy"),
                   "-o", str(tmp_path / "pkg"))
    assert done.returncode == 0, done.stderr
    (got,) = _onnx(tmp_path / "pkg" / "model.onnx", {"X": X})
    assert np.abs(got.reshape(-1) - model.predict(X)).max() < 1e-3


def test_native_targets_round_trip(tmp_path):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    xgbc = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    package = convert(xgbc, to="xgboost-json", sample=X, out=tmp_path / "x")
    reloaded = xgb.XGBClassifier()
    reloaded.load_model(str(package.model_path))
    assert np.array_equal(reloaded.predict_proba(X), xgbc.predict_proba(X))
    lgbr = lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, y.astype(float))
    package = convert(lgbr, to="lightgbm", sample=X, out=tmp_path / "l")
    assert np.array_equal(lgb.Booster(model_file=str(package.model_path)).predict(X.to_numpy()), lgbr.predict(X))
    with pytest.raises(UnsupportedConversion, match="holds only the XGBClassifier booster"):
        convert(_pipeline(xgb.XGBClassifier(n_estimators=3), list(X.columns[1:])).fit(_mixed(X, "alcohol"), y), to="xgboost-json",
                sample=_mixed(X, "alcohol"), out=tmp_path / "p")


@pytest.mark.parametrize("name, content, message", [
    ("model.json", b'{"learner": {"gradient_booster": {}, "objective": {"name": "binary:logistic"}', "is not valid JSON"),
    ("model.json", b'{"learner": {"attributes": {}}, "version": [3, 2, 0]}', "is JSON but not an XGBoost model"),
    ("model.txt", b"tree\nversion=v4\nnum_class=1\nTree=0\nnum_leaves=3\n", "truncated LightGBM model"),
    ("model.cbm", b"CBM1\x00\x00\x00\x10garbage", "CatBoost cannot load"),
])
def test_malformed_native_file_is_one_line_exit_4(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    done = run_cli("convert", str(tmp_path / name), "--to", "onnx", "-o", str(tmp_path / "pkg"))
    assert done.returncode == 4, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pkg").exists()


def test_a_lightgbm_text_with_a_broken_tree_is_an_input_error(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(str(tmp_path / "model.txt"))
    text = (tmp_path / "model.txt").read_text()
    (tmp_path / "model.txt").write_text(text.replace("split_feature=", "split_feature=x", 1))
    # LightGBM's own reader aborts the process on this file (measured: "Fatal Python error: Aborted"): it must never see it
    with pytest.raises(InputFileError, match="model.txt is a malformed LightGBM model"):
        convert(tmp_path / "model.txt", to="onnx", out=tmp_path / "pkg")


# ---------------------------------------------------------------- PMML

@pytest.mark.java
@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda: xgb.XGBRegressor(n_estimators=20, max_depth=3),
                                  lambda: lgb.LGBMRegressor(n_estimators=20, verbose=-1)], ids=["xgboost", "lightgbm"])
def test_regressor_in_column_pipeline_pmml_matches_float64_predict(tmp_path, make):
    """JPMML scores the float64 rows the user has; LightGBM's thresholds are double, so float32 rows would not do."""
    import jpmml_evaluator
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = _mixed(X, "bmi")
    X_train, X_test, y_train, _ = _split(X, y)
    model = _pipeline(make(), [c for c in X.columns if c != "band"]).fit(X_train, y_train)
    package = convert(model, to="pmml", sample=X_test, out=tmp_path / "pmml")
    assert package.validation["status"] == "passed"
    evaluator = jpmml_evaluator.make_evaluator(str(package.model_path), backend="jpype").verify()
    got = evaluator.evaluateAll(X_test.reset_index(drop=True))["y"].to_numpy(np.float64)
    expected = model.predict(X_test)
    assert np.abs(got - expected).max() < 1e-4 * (expected.max() - expected.min())
