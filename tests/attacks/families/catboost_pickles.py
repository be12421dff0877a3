"""Pickles that reach CatBoost now that its scikit-learn-API estimators may be rebuilt from state: a real fitted model's
pickle with a method call appended (``getattr(model, "save_model")(marker)`` writes the marker), constructors called
directly or through ``copyreg._reconstructor``, CatBoost classes that are not on the list (its base class, ``Pool``
reading a file, the Cython ``_CatBoost``), and model bytes that are not a model. Built from a real pickle's bytes
and hand-written opcodes, as an attacker would."""
from __future__ import annotations

import pickle
from pathlib import Path

from tests.attacks.build_corpus import Attack, _s

_PROTO4 = b"\x80\x04"
_SLOT = b"99999"  # a memo slot the real pickle never uses (it numbers its own from 0)


def _fitted_bytes() -> bytes:
    import catboost as cb
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    model = cb.CatBoostClassifier(iterations=3, verbose=0, allow_writing_files=False, thread_count=1).fit(X, y)
    return pickle.dumps(model, protocol=4)


def _then_call(real: bytes, method: str, *args: str) -> bytes:
    """The real pickle (its object left on the stack), PUT in a spare slot, then getattr(obj, method)(*args)."""
    body = real[:-1] + b"p" + _SLOT + b"\n"
    call = (_s("builtins") + _s("getattr") + b"\x93" + b"(" + b"g" + _SLOT + b"\n" + _s(method) + b"tR"
            + b"(" + b"".join(_s(a) for a in args) + b"tR")
    return body + call + b"."


def _new_build_call(module: str, name: str, real_state: bytes, method: str, *args: str) -> bytes:
    """NEWOBJ module.name(); BUILD with the given state opcodes; getattr(obj, method)(*args)."""
    obj = _PROTO4 + _s(module) + _s(name) + b"\x93" + b")" + b"\x81" + real_state + b"b" + b"p" + _SLOT + b"\n"
    call = (_s("builtins") + _s("getattr") + b"\x93" + b"(" + b"g" + _SLOT + b"\n" + _s(method) + b"tR"
            + b"(" + b"".join(_s(a) for a in args) + b"tR")
    return obj + call + b"."


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    try:
        real = _fitted_bytes()
    except ImportError:  # catboost not installed: nothing of it to attack
        return []
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes, str, bool]] = [
        # a bound method of an allowed instance, called: naive pickle writes the model to the marker path
        ("catboost_save_model_call.pkl", _then_call(real, "save_model", marker), "unsafe", True),
        ("catboost_save_borders_call.pkl", _then_call(real, "save_borders", marker), "unsafe", True),
        ("catboost_save_model_call.joblib", _then_call(real, "save_model", marker), "unsafe", True),
        # the constructor called (REDUCE) and called through copyreg._reconstructor (base.__init__)
        ("catboost_constructor_reduce.pkl",
         _PROTO4 + _s("catboost.core") + _s("CatBoostClassifier") + b"\x93" + b"(" + b"K\x05" + b"tR.", "unsafe", False),
        ("catboost_reconstructor_init.pkl",
         _PROTO4 + _s("copyreg") + _s("_reconstructor") + b"\x93" + b"(" + _s("catboost.core") + _s("CatBoostRegressor") + b"\x93"
         + _s("catboost.core") + _s("CatBoostRegressor") + b"\x93" + b"K\x05" + b"tR.", "unsafe", False),
        # CatBoost classes off the list: the generic base class with a fitted state and a save, Pool on a path, _CatBoost
        ("catboost_base_class_save.pkl",
         _new_build_call("catboost.core", "CatBoost", b"}" + _s("iterations") + b"K\x03" + b"s", "save_model", marker), "unsafe", True),
        ("catboost_pool_reads_path.pkl",
         _PROTO4 + _s("catboost.core") + _s("Pool") + b"\x93" + b"(" + _s(str(benign)) + b"tR.", "unsafe", True),
        ("catboost_cython_object.pkl",
         _new_build_call("_catboost", "_CatBoost", b"}", "_save_model", marker, "cbm"), "unsafe", True),
        ("catboost_reexported_class.pkl",
         _PROTO4 + _s("catboost") + _s("CatBoostClassifier") + b"\x93" + b")" + b"\x81" + b"}" + b"b" + b".", "unsafe", False),
        # model bytes that are not a model: CatBoost's deserializer raises, which must be an input error, not a traceback
        ("catboost_garbage_model_bytes.pkl",
         _PROTO4 + _s("catboost.core") + _s("CatBoostClassifier") + b"\x93" + b")" + b"\x81"
         + b"}" + _s("__model") + b"C\x10" + b"CBM1" + b"\x00" * 4 + b"garbage!" + b"s" + b"b" + b".", "either", False),
    ]
    attacks = []
    for name, data, expect, runs_code in files:
        path = out / name
        path.write_bytes(data)
        attacks.append(Attack(name, path, expect, runs_code))
    return attacks
