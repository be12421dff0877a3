"""LightGBM: the text model file (``booster.save_model("model.txt")``) as a source and target, and the ONNX converter of its
scikit-learn API with double-precision thresholds.

Safe to load: the text model is data (key=value lines, one block per tree) parsed by LightGBM's C++ reader; no pickle, no
Python object from the file. Its header is checked here first, so a malformed file is a one-line InputFileError.

Precision: LightGBM keeps split thresholds as float64 and compares float64 inputs with them. onnxmltools writes the
thresholds as float32 attributes and skl2onnx feeds float32, which moves rows that lie between a threshold and its float32
rounding to the other branch (measured on diabetes, 30 trees: 2 of 111 held-out rows off by up to 3.03). So the scikit-learn
plugin gives LightGBM models a float64 input (SPLIT_DTYPE), and the registered converter writes thresholds, leaf weights and
base values as double tensors (``*_as_tensor``, ai.onnx.ml opset 3), which onnxruntime runs in double.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.contract import Format, PickleGlobals
from packager.deps import require
from packager.errors import InputFileError, first_line
from packager.plugins import adapts, converts, framework, runs
from packager.validation import SAME_KERNELS, criteria_table

from ._sklearn_api import NativeRuntime, SklearnApiFramework, boosted_estimator, holds, read_text_head, save_native
from .shared import TreeConverter

SPLIT_DTYPE = "float64"
TEXT = "lightgbm"
HEADER = b"tree\nversion=v"
_DOUBLE_ATTRIBUTES = ("nodes_values", "target_weights", "class_weights", "base_values")


def _lgb():
    return require("lightgbm", "lightgbm", "LightGBM models")


@framework("lightgbm")
class LightGBM(SklearnApiFramework):
    """LightGBM text models, loaded into LGBMClassifier / LGBMRegressor (chosen by the stored objective)."""

    distribution = "lightgbm"
    file_formats = frozenset({TEXT})

    def load_native(self, path: Path, fmt: str) -> Any:
        check_text_model(path)
        lgb = _lgb()
        try:
            booster = lgb.Booster(model_file=str(path))
        except Exception as exc:
            raise InputFileError(
                f"LightGBM cannot load {path.name}: {first_line(exc, 200)}", "re-save it with booster_.save_model('model.txt')"
            ) from exc
        return estimator_from_booster(booster)


def check_text_model(path: Path) -> None:
    """Every tree block checked before LightGBM's C++ reader sees the file (packager.safety.boosting): that reader
    aborts the whole process on a malformed number (measured, lightgbm 4.7: ``split_feature=x0`` -> "Fatal Python
    error: Aborted") and reads outside the file when ``tree_sizes`` lies, so a bad file must never reach it."""
    from packager.safety.boosting import check_lightgbm_text

    read_text_head(path, 1)  # a one-line error for an unreadable file
    check_lightgbm_text(Path(path).read_bytes(), path.name)


def estimator_from_booster(booster: Any) -> Any:
    """An LGBMClassifier/LGBMRegressor around a loaded Booster, as ``fit`` leaves it. The text file stores no class labels:
    a classifier predicts 0..n-1, as the booster does."""
    import numpy as np

    lgb = _lgb()
    objective = str(booster.params.get("objective") or booster.dump_model(num_iteration=1).get("objective", "regression")).split()[0]
    classifier = objective.startswith(("binary", "multiclass", "multiclassova"))
    estimator = (lgb.LGBMClassifier if classifier else lgb.LGBMRegressor)()
    estimator._Booster = booster
    estimator._n_features = estimator._n_features_in = booster.num_feature()
    estimator._objective = objective
    estimator._fitted_with_feature_names = False
    estimator.fitted_ = True
    if classifier:
        classes = np.arange(max(int(booster.dump_model(num_iteration=1).get("num_class", 1)), 2))
        estimator._le = lgb.sklearn._LGBMLabelEncoder().fit(classes)
        estimator._classes, estimator._n_classes = classes, len(classes)
        estimator._class_map = {c: c for c in classes}
    return estimator


def is_text_model(path: Path, head: bytes) -> bool:
    return head.replace(b"\r\n", b"\n").startswith(HEADER)


TEXT_FORMAT = Format(
    TEXT,
    title="LightGBM text model",
    suffix=".txt",
    detect=is_text_model,
    # text (key=value lines, one block per tree), no pickle: checked tree by tree before LightGBM's C++ reader sees it,
    # as a format check so that push and every load run it (issue 21 finding 5)
    check=check_text_model,
)

# The library's own predict on its own file: the same kernels as the source, so the same results.
NATIVE_CRITERIA = criteria_table({None: SAME_KERNELS})


@runs(TEXT, criteria=NATIVE_CRITERIA)
class LightGBMRuntime(NativeRuntime):
    name, distribution, framework, native_format = "lightgbm", "lightgbm", "lightgbm", TEXT


def _save(model: Any, out: Path) -> Any:
    estimator = boosted_estimator(model, ("lightgbm",), "a LightGBM text model")
    return save_native("lightgbm", estimator.booster_.save_model, out / "model.txt")


@converts(
    "sklearn",
    to=TEXT,
    note="LGBMClassifier/LGBMRegressor (not a whole pipeline): LightGBM's text model",
    applies=holds("lightgbm"),
    applies_to="LightGBM estimators",
)
def sklearn_to_lightgbm(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out)


@converts("lightgbm", to=TEXT)
def lightgbm_to_text(model: Any, signature, out: Path, options) -> Any:
    return _save(model, out)


# An LGBMClassifier is a scikit-learn estimator: scikit-learn's converters to ONNX (onnxmltools' converter, registered
# with skl2onnx) and PMML (sklearn2pmml) take it as it is (two one-line wrappers before)
@adapts(
    "lightgbm",
    to="sklearn",
    targets={"onnx": "onnxmltools' LightGBM converter, double thresholds", "pmml": "sklearn2pmml (Java, AGPL-3.0)"},
)
def lightgbm_as_sklearn(model: Any) -> Any:
    return model


# ---------------------------------------------------------------- skl2onnx registration


def register_skl2onnx() -> None:
    """Make skl2onnx convert LGBMClassifier/LGBMRegressor (alone or as a pipeline step) with onnxmltools' converter, writing
    double thresholds when the tree's input is double. Idempotent."""
    lgb = _lgb()
    require("onnxmltools", "lightgbm", "ONNX export of LightGBM models")
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes

    converter = _with_double_thresholds(convert_lightgbm)
    update_registered_converter(
        lgb.LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        converter,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        lgb.LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, converter, options={"split": None}
    )


def _with_double_thresholds(convert: Any) -> Any:
    def convert_double(scope, operator, container):
        from onnx import TensorProto
        from skl2onnx.common.data_types import DoubleTensorType

        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            return convert(scope, operator, container)
        original = container.add_node

        def add_node(op_type, inputs, outputs, op_domain="", op_version=None, **attrs):
            if op_type not in ("TreeEnsembleRegressor", "TreeEnsembleClassifier"):
                return original(op_type, inputs, outputs, op_domain=op_domain, op_version=op_version, **attrs)
            attrs = _as_double_tensors(attrs)
            # a tree ensemble's scores are float whatever the threshold type; the declared outputs follow the input (double)
            names = [outputs] if isinstance(outputs, str) else list(outputs)
            scores, single = scope.get_unique_variable_name("scores32"), names[-1]
            original(op_type, inputs, [*names[:-1], scores], op_domain=op_domain, op_version=3, **attrs)
            return original("Cast", scores, single, to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("CastScores"))

        container.add_node = add_node
        try:
            return convert(scope, operator, container)
        finally:
            del container.add_node

    return convert_double


def _as_double_tensors(attrs: dict) -> dict:
    import numpy as np
    from onnx import numpy_helper

    converted = dict(attrs)
    for name in _DOUBLE_ATTRIBUTES:
        if name in converted and converted[name] is not None:
            values = np.asarray(converted.pop(name), dtype=np.float64)
            converted[f"{name}_as_tensor"] = numpy_helper.from_array(values, name=f"{name}_as_tensor")
    return converted


# ---------------------------------------------------------------- what this plugin declares to others

# the scikit-learn plugin converts pipelines holding LGBMClassifier/LGBMRegressor through this (its extension point)
TREES = TreeConverter("lightgbm", register_skl2onnx=register_skl2onnx, split_dtype=SPLIT_DTYPE)
# pickled scikit-learn-API models hold these; the pickle allow-list rebuilds them, never calls them
PICKLED = PickleGlobals(
    "lightgbm",
    rebuilt_only=(
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMRanker",
        "lightgbm.basic.Booster",
    ),
    why="__setstate__ hands the model text to LightGBM's own model parser; Booster(model_file=...) reads files, so a "
    "pickle may never call the constructors. Dataset, callbacks and the rest stay refused",
)
