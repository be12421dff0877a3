"""Pickled XGBoost/LightGBM scikit-learn-API models load (their classes are rebuilt from state), while a
pickle that *calls* a booster's constructor (which reads a model file it is given) is refused."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from packager.errors import UnsafeModelError
from packager.safety import check_file, load_pickle

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")


def _s(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize(
    "make", [lambda: xgboost.XGBClassifier(n_estimators=5), lambda: lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)]
)
def test_pickled_boosting_estimators_load_and_predict_the_same(make, tmp_path):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    model = make().fit(X, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    check_file(path, "pickle")
    np.testing.assert_array_equal(load_pickle(path).predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("booster", ["xgboost.core Booster", "lightgbm.basic Booster"])
def test_a_pickle_calling_a_booster_constructor_is_refused(booster, tmp_path):
    module, name = booster.split()
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    call = b"\x80\x04" + _s(module) + _s(name) + b"\x93" + b"(" + b"N" + b"N" + _s(str(secret)) + b"tR."  # Booster(None, None, path)
    base = (b"\x80\x04" + _s("copyreg") + _s("_reconstructor") + b"\x93" + b"(" + _s(module) + _s(name) + b"\x93"
            + _s(module) + _s(name) + b"\x93" + _s(str(secret)) + b"tR.")  # _reconstructor(Booster, Booster, path)
    for label, data in (("call", call), ("base", base)):
        path = tmp_path / f"{label}.pkl"
        path.write_bytes(data)
        with pytest.raises(UnsafeModelError, match="calls|constructor of"):
            load_pickle(path)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("container", ["pickle", "joblib", "skops"])
def test_pickled_catboost_estimators_convert_alone_to_onnx(kind, container, tmp_path):
    """A CatBoostClassifier/Regressor in a pickle, joblib or skops file is rebuilt from its state (its model bytes go to
    CatBoost's own deserializer) and handed to the CatBoost plugin: ONNX through CatBoost's exporter, validated."""
    catboost = pytest.importorskip("catboost")
    import joblib
    import onnxruntime as ort
    from sklearn.datasets import load_diabetes, load_wine

    from packager.conversion import convert

    X, y = (load_wine if kind == "classifier" else load_diabetes)(return_X_y=True, as_frame=True)
    cls = catboost.CatBoostClassifier if kind == "classifier" else catboost.CatBoostRegressor
    model = cls(iterations=20, verbose=0, allow_writing_files=False, thread_count=1).fit(X, y)
    path = tmp_path / f"model.{ {'pickle': 'pkl', 'joblib': 'joblib', 'skops': 'skops'}[container] }"
    if container == "pickle":
        path.write_bytes(pickle.dumps(model))
    elif container == "joblib":
        joblib.dump(model, path)
    else:
        import skops.io as sio

        sio.dump(model, path)
    X.to_csv(tmp_path / "rows.csv", index=False)
    package = convert(path, to="onnx", sample=tmp_path / "rows.csv", out=tmp_path / "pkg")
    assert package.validation["status"] == "passed"
    assert package.manifest.source.framework == "catboost"
    outputs = ort.InferenceSession(str(package.model_path)).run(None, {"X": X.to_numpy(np.float32)})
    if kind == "classifier":
        assert (outputs[0].reshape(-1) == model.predict(X).reshape(-1)).all()
        assert np.abs(outputs[1] - model.predict_proba(X)).max() < 1e-5
    else:
        assert np.abs(outputs[0].reshape(-1) - model.predict(X)).max() < 1e-4 * float(y.max() - y.min())


def test_a_catboost_state_with_file_parameters_writes_nothing(tmp_path):
    """CatBoost's __setstate__ keeps every other state key as a training parameter: train_dir and allow_writing_files
    matter only to fit, which a loaded model never runs; converting it writes nowhere but the package."""
    catboost = pytest.importorskip("catboost")
    from sklearn.datasets import load_iris

    from packager.conversion import convert

    X, y = load_iris(return_X_y=True)
    model = catboost.CatBoostClassifier(iterations=5, verbose=0, allow_writing_files=False, thread_count=1).fit(X, y)
    state = model.__getstate__()
    state.update(train_dir=str(tmp_path / "PWNED"), allow_writing_files=True, save_snapshot=True)
    rebuilt = catboost.CatBoostClassifier.__new__(catboost.CatBoostClassifier)
    rebuilt.__setstate__(state)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(rebuilt))
    package = convert(tmp_path / "model.pkl", to="onnx", sample=X[:60], out=tmp_path / "pkg")
    assert package.validation["status"] == "passed"
    assert not (tmp_path / "PWNED").exists()
