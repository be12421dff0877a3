"""XGBoost: native model files (JSON, UBJSON) as sources and targets, and the ONNX converter of its scikit-learn API.

Safe to load: an XGBoost JSON or UBJSON model is data (trees, split values, the objective's name) parsed by XGBoost's
C++ reader; no pickle is involved and no Python object is built from the file. The JSON form is parsed and its structure
checked here first, so a malformed file is a one-line InputFileError rather than a C++ parser message.

Precision: XGBoost stores split conditions as float32 and casts every input to float32 before walking a tree (DMatrix
holds float32), so a float32 ONNX input reproduces its tree paths exactly; SPLIT_DTYPE says so to the scikit-learn plugin.
Behind other steps (a scaler) the graph takes float64 and casts to float32 just before the trees, as XGBoost does
(``float32_trees``): a float32 scaler in the graph moved wine rows across split values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager.contract import Format, PickleGlobals
from packager.deps import require, version_of
from packager.errors import InputFileError, UnsupportedConversion, first_line
from packager.plugins import adapts, converts, framework, runs
from packager.validation import SAME_KERNELS, criteria_table

from ._sklearn_api import NativeRuntime, SklearnApiFramework, boosted_estimator, float32_trees, holds, save_native
from .shared import TreeConverter

SPLIT_DTYPE = "float32"
JSON, UBJ = "xgboost-json", "xgboost-ubj"
CLASSIFIER_OBJECTIVES = ("binary:", "multi:")


def _xgb():
    return require("xgboost", "xgboost", "XGBoost models")


@framework("xgboost")
class XGBoost(SklearnApiFramework):
    """XGBoost model files, loaded into XGBClassifier / XGBRegressor (chosen by the stored objective)."""

    distribution = "xgboost"
    file_formats = frozenset({JSON, UBJ})

    def load_native(self, path: Path, fmt: str) -> Any:
        xgb = _xgb()
        if fmt == JSON:
            check_json_model(path)
        else:
            check_ubj_model(path)
        try:
            booster = xgb.Booster(model_file=str(path))
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
            estimator = (xgb.XGBClassifier if objective.startswith(CLASSIFIER_OBJECTIVES) else xgb.XGBRegressor)()
            estimator.load_model(str(path))
        except Exception as exc:
            raise InputFileError(
                f"XGBoost cannot load {path.name}: {first_line(exc, 200)}", "re-save it with model.save_model('model.json')"
            ) from exc
        return estimator


def check_json_model(path: Path) -> None:
    """The top-level shape XGBoost writes ({"learner": {"gradient_booster": ..., "objective": ...}, "version": [...]}),
    then every tree's arrays and indices (packager.safety.boosting), before XGBoost's C++ reader sees the file."""
    from packager.safety.boosting import check_xgboost_document

    try:
        document = json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"{path.name} is not valid JSON ({first_line(exc, 120)})", "the file is truncated or corrupt; re-save the model"
        ) from None
    learner = document.get("learner") if isinstance(document, dict) else None
    missing = [k for k in ("gradient_booster", "objective", "learner_model_param") if not isinstance(learner, dict) or k not in learner]
    if missing:
        raise InputFileError(
            f"{path.name} is JSON but not an XGBoost model (learner lacks {', '.join(missing)})",
            "give the file written by XGBoost's save_model('model.json')",
        )
    check_xgboost_document(document, path.name)


def check_ubj_model(path: Path) -> None:
    """The UBJSON form decoded by our bounds-checked reader and checked as the JSON form is."""
    from packager.safety.boosting import check_xgboost_document, read_ubjson

    try:
        document = read_ubjson(Path(path).read_bytes())
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"{path.name} is not valid UBJSON ({first_line(exc, 120)})", "the file is truncated or corrupt; re-save the model"
        ) from None
    check_xgboost_document(document, path.name)


def is_json_model(path: Path, head: bytes) -> bool:
    """A JSON object whose first key is "learner" (XGBoost writes it first; a re-serialised JSON may not, so "learner"
    anywhere in the head of a JSON object counts too)."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith(b"{") and b'"learner"' in text


def is_ubj_model(path: Path, head: bytes) -> bool:
    """A UBJSON object (``{`` then a length-type marker) whose first key is "learner"."""
    return len(head) > 2 and head[:1] == b"{" and head[1:2] in b"iUIlL" and b"learner" in head[2:18]


# data parsed by XGBoost's own C++ reader (trees, split values, the objective's name): no pickle, no Python object
JSON_FORMAT = Format(
    JSON,
    title="XGBoost JSON model",
    suffix=".json",
    detect=is_json_model,
    check=check_json_model,  # a format check, so push and every load run it (issue 21 finding 5)
)
UBJ_FORMAT = Format(
    UBJ,
    title="XGBoost UBJSON model",
    suffix=".ubj",
    detect=is_ubj_model,
    check=check_ubj_model,
)

# The library's own predict on its own file: the same kernels as the source, so the same results.
NATIVE_CRITERIA = criteria_table({None: SAME_KERNELS})


@runs(JSON, criteria=NATIVE_CRITERIA)
class XGBoostJsonRuntime(NativeRuntime):
    name, distribution, framework, native_format = "xgboost", "xgboost", "xgboost", JSON


@runs(UBJ, criteria=NATIVE_CRITERIA)
class XGBoostUbjRuntime(NativeRuntime):
    name, distribution, framework, native_format = "xgboost", "xgboost", "xgboost", UBJ


def _save(model: Any, out: Path, fmt: str) -> Any:
    estimator = boosted_estimator(model, ("xgboost",), "an XGBoost model file")
    return save_native("xgboost", estimator.save_model, out / ("model.json" if fmt == JSON else "model.ubj"))


@converts(
    "sklearn",
    to=JSON,
    note="XGBClassifier/XGBRegressor (not a whole pipeline): XGBoost's own JSON model",
    applies=holds("xgboost"),
    applies_to="XGBoost estimators",
)
def sklearn_to_xgboost_json(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out, JSON)


@converts(
    "sklearn",
    to=UBJ,
    note="XGBClassifier/XGBRegressor: XGBoost's binary JSON (UBJSON) model",
    applies=holds("xgboost"),
    applies_to="XGBoost estimators",
)
def sklearn_to_xgboost_ubj(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out, UBJ)


@converts("xgboost", to=JSON)
def xgboost_to_json(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out, JSON)


@converts("xgboost", to=UBJ)
def xgboost_to_ubj(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out, UBJ)


# An XGBClassifier is a scikit-learn estimator: scikit-learn's converters to ONNX (onnxmltools' converter, registered
# with skl2onnx) and PMML (sklearn2pmml) take it as it is (two one-line wrappers before)
@adapts(
    "xgboost",
    to="sklearn",
    targets={"onnx": "onnxmltools' XGBoost converter inside skl2onnx", "pmml": "sklearn2pmml (Java, AGPL-3.0)"},
)
def xgboost_as_sklearn(model: Any) -> Any:
    return model


# ---------------------------------------------------------------- skl2onnx registration


def register_skl2onnx() -> None:
    """Make skl2onnx convert XGBClassifier/XGBRegressor (alone or as a pipeline step) with onnxmltools' converter, so users
    never call ``update_registered_converter`` themselves. Idempotent."""
    xgb = _xgb()
    require("onnxmltools", "xgboost", "ONNX export of XGBoost models")
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes

    refuse = float32_trees(_refusing(convert_xgboost))
    update_registered_converter(
        xgb.XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        refuse,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(xgb.XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, refuse)


def _refusing(convert: Any) -> Any:
    """onnxmltools writes numeric-threshold trees only: a model trained with categorical splits
    (``enable_categorical=True`` on category columns) has no ONNX form there."""

    def convert_checked(scope, operator, container):
        model = operator.raw_operator
        # a booster may carry names without types, or neither: no types, no categorical column
        categorical = [
            n for n, t in zip(model.get_booster().feature_names or [], model.get_booster().feature_types or [], strict=False) if t == "c"
        ]
        if categorical:
            raise UnsupportedConversion(
                f"onnxmltools {version_of('onnxmltools')} cannot convert XGBoost categorical splits (features {', '.join(categorical)})",
                "use --to pmml or xgboost-json, or one-hot/ordinal-encode those columns before the model",
            )
        # onnxmltools reads split features from the tree dump and takes only the names f0, f1...: a model trained on a
        # DataFrame names them by column ("Unable to interpret 'worst radius'"); the column order is the input's anyway
        booster = model.get_booster()
        names, types = booster.feature_names, booster.feature_types
        booster.feature_names = None
        try:
            return convert(scope, operator, container)
        finally:
            booster.feature_names, booster.feature_types = names, types

    return convert_checked


# ---------------------------------------------------------------- what this plugin declares to others

# the scikit-learn plugin converts pipelines holding XGBClassifier/XGBRegressor through this (its extension point)
TREES = TreeConverter("xgboost", register_skl2onnx=register_skl2onnx, split_dtype=SPLIT_DTYPE)
# pickled scikit-learn-API models hold these; the pickle allow-list rebuilds them, never calls them
PICKLED = PickleGlobals(
    "xgboost",
    rebuilt_only=(
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRanker",
        "xgboost.sklearn.XGBRFClassifier",
        "xgboost.sklearn.XGBRFRegressor",
        "xgboost.core.Booster",
    ),
    why="__setstate__ hands the booster's raw bytes to XGBoost's own model parser; the constructors read model files "
    "(Booster(model_file=...)), so a pickle may never call them. DMatrix, callbacks and the rest stay refused",
)
