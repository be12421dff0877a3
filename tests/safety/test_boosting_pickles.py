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


@pytest.mark.parametrize("make", [lambda: xgboost.XGBClassifier(n_estimators=5), lambda: lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)])
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
