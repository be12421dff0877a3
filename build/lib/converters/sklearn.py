"""scikit-learn: load (safely), infer the signature, predict natively, convert to ONNX and re-serialize.

Columnar models (a ColumnTransformer selecting pandas columns by name) get one (batch, 1) input per
column, so string categories travel as strings into ONNX and PMML; every other model gets one
float32 matrix input ``X``.
"""
from __future__ import annotations

import pickle
import warnings
import weakref
from pathlib import Path
from typing import Any

from packager.deps import require, version_of
from packager.errors import ConversionError, InputFileError, PackagerWarning, SampleError, UnsupportedConversion, UsageError
from packager.plugins import converts, framework
from packager.signature import Signature, TensorSpec, synthesize

LABEL, PROBABILITIES, SCORES, VARIABLE = "label", "probabilities", "scores", "variable"
DEFAULT_ROWS = 200
_PICKLED_WITH: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


@framework("sklearn")
class Sklearn:
    """The scikit-learn source framework."""

    file_formats = frozenset({"pickle", "joblib", "skops"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return any(c.__module__.startswith("sklearn.") for c in type(obj).__mro__) and hasattr(obj, "get_params")

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        from packager import safety

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if fmt == "skops":
                model = load_skops(path, trust=trust)
            elif fmt == "joblib":
                model = safety.load_joblib(path, trust=trust)
            else:
                model = safety.load_pickle(path, trust=trust)
        if not self.claims(model):
            raise UnsupportedConversion(
                f"{path.name} holds a {type(model).__module__}.{type(model).__qualname__}, not a scikit-learn estimator",
                "pickle the fitted estimator or pipeline itself",
            )
        pickled_with = [str(getattr(w.message, "original_sklearn_version", "")) for w in caught if type(w.message).__name__ == "InconsistentVersionWarning"]
        if pickled_with:
            warnings.warn(
                f"{path.name} was pickled with scikit-learn {pickled_with[0]} but {version_of('scikit-learn')} is installed; "
                "predictions may differ (validation will tell)",
                PackagerWarning,
                stacklevel=2,
            )
            _PICKLED_WITH[model] = pickled_with[0]
        return model

    def describe(self, model: Any) -> dict[str, Any]:
        pickled = _PICKLED_WITH.get(model) or getattr(model, "_sklearn_version", None) or version_of("scikit-learn")
        return {"estimator": type(model).__name__, "pickled_with_sklearn": pickled, "steps": _step_names(model)}

    def versions(self) -> dict[str, str]:
        return {"scikit-learn": version_of("scikit-learn"), "numpy": version_of("numpy")}

    def label_outputs(self, model: Any) -> set[str]:
        return {LABEL}

    # ---- signature and samples ----
    def signature(self, model: Any, sample: Any) -> Signature:
        names = getattr(model, "feature_names_in_", None)
        if names is not None and _has_column_transformer(model):
            return Signature(tuple(_column_spec(model, str(n), sample) for n in names), columnar=True)
        width = getattr(model, "n_features_in_", None)
        if width is None and sample is not None:
            width = _as_matrix(sample).shape[1]
        if width is None:
            raise UsageError(
                f"cannot tell how many features {type(model).__name__} takes",
                "give --sample FILE or --input-shape 1,N",
            )
        return Signature((TensorSpec("X", "float32", (None, int(width))),))

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        if sample is None:
            return _synthesize(model, signature)
        if signature.columnar:
            return _column_feeds(signature, sample)
        matrix = _as_matrix(sample).astype("float32")
        expected = signature.inputs[0].shape[1]
        if matrix.ndim != 2 or matrix.shape[1] != expected:
            raise UsageError(f"the sample has shape {matrix.shape}, but the model takes {expected} features", "give a sample with one column per feature")
        return {"X": matrix}

    def predict(self, model: Any, signature: Signature, feeds: dict[str, Any]) -> dict[str, Any]:
        X = _native_input(model, signature, feeds)
        methods = _output_methods(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return {name: _dense(method(X)) for name, method in methods.items()}
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise SampleError(
                f"{type(model).__name__} itself fails on the sample inputs ({type(exc).__name__}: {first})",
                "give --sample FILE with rows like the training data",
            ) from exc


    def serve(self, model: Any, signature: Signature, feeds: dict[str, Any]) -> dict[str, Any]:
        """Every output in one pass: a classifier's label is the argmax of its probabilities (``bench``
        checks this matches ``predict`` before timing it), so it is not computed twice."""
        methods = _output_methods(model)
        if set(methods) != {LABEL, PROBABILITIES} or not hasattr(model, "classes_"):
            return self.predict(model, signature, feeds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probabilities = model.predict_proba(_native_input(model, signature, feeds))
        return {LABEL: model.classes_[probabilities.argmax(axis=1)], PROBABILITIES: probabilities}


def _dense(values: Any) -> Any:
    """Sparse outputs (TfidfTransformer, KNeighborsTransformer) compare as dense arrays."""
    return values.toarray() if hasattr(values, "toarray") else values


def _step_names(model: Any) -> list[str]:
    steps = getattr(model, "steps", None)
    return [type(s).__name__ for _, s in steps] if steps else []


def _has_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    if isinstance(model, ColumnTransformer):
        return True
    return any(_has_column_transformer(step) for _, step in getattr(model, "steps", []) if step not in (None, "passthrough"))


def _categories_by_column(model: Any) -> dict[str, list]:
    """Column -> known categories, read from fitted encoders inside ColumnTransformers."""
    from sklearn.compose import ColumnTransformer

    found: dict[str, list] = {}
    if isinstance(model, ColumnTransformer):
        for _, transformer, columns in getattr(model, "transformers_", []):
            for encoder in _walk_steps(transformer):
                categories = getattr(encoder, "categories_", None)
                if categories is not None and isinstance(columns, (list, tuple)) and len(columns) == len(categories):
                    found.update({str(c): list(cats) for c, cats in zip(columns, categories)})
    for _, step in getattr(model, "steps", []):
        found.update(_categories_by_column(step))
    return found


def _walk_steps(estimator: Any):
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _walk_steps(step)


def _column_spec(model: Any, name: str, sample: Any) -> TensorSpec:
    import numpy as np

    if sample is not None and hasattr(sample, "columns") and name in sample.columns:
        kind = np.asarray(sample[name]).dtype.kind
    else:
        categories = _categories_by_column(model).get(name)
        kind = np.asarray(categories).dtype.kind if categories is not None else "f"
    dtype = "str" if kind in "OUS" else "int64" if kind in "iub" else "float32"
    return TensorSpec(name, dtype, (None, 1))


def _as_matrix(sample: Any):
    import numpy as np

    if isinstance(sample, dict):
        if len(sample) != 1:
            raise UsageError("the sample has several arrays but the model takes one matrix", "give a single array")
        sample = next(iter(sample.values()))
    array = sample.to_numpy() if hasattr(sample, "to_numpy") else np.asarray(sample)
    if array.dtype.kind in "OUS":
        raise UsageError("the sample has text columns, but the model takes a numeric matrix", "encode them, or pass the pipeline that encodes them")
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _column_feeds(signature: Signature, sample: Any) -> dict[str, Any]:
    if not hasattr(sample, "columns"):
        raise UsageError("this model selects columns by name, so the sample must be a table", "give --sample as .csv or .parquet with the training columns")
    missing = [s.name for s in signature.inputs if s.name not in sample.columns]
    if missing:
        raise UsageError(f"the sample lacks columns {missing}", f"the model needs {signature.input_names}")
    feeds = {}
    for spec in signature.inputs:
        column = sample[[spec.name]].to_numpy()
        feeds[spec.name] = column.astype(str).astype(object) if spec.is_text else column.astype(spec.dtype)
    return feeds


def _synthesize(model: Any, signature: Signature) -> dict[str, Any]:
    import numpy as np

    feeds = synthesize(signature, rows=DEFAULT_ROWS)
    rng = np.random.default_rng(1)
    for name, categories in _categories_by_column(model).items():
        if name in feeds:
            values = np.asarray(categories)
            feeds[name] = rng.choice(values, size=(DEFAULT_ROWS, 1)).astype(feeds[name].dtype if values.dtype.kind not in "OUS" else object)
    return feeds


def _native_input(model: Any, signature: Signature, feeds: dict[str, Any]):
    import pandas as pd

    if signature.columnar:
        return pd.DataFrame({name: feeds[name].reshape(-1) for name in signature.input_names})
    names = getattr(model, "feature_names_in_", None)
    X = feeds[signature.inputs[0].name]
    return pd.DataFrame(X, columns=[str(n) for n in names]) if names is not None else X


def _output_methods(model: Any) -> dict[str, Any]:
    """Output name -> bound method, in the order skl2onnx emits the graph outputs."""
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor
    from sklearn.feature_selection import SelectorMixin

    methods: dict[str, Any] = {}
    if isinstance(model, SelectorMixin):  # RFE(LogisticRegression()) is tagged a classifier but exports as a selector
        methods[VARIABLE] = model.transform
    elif is_classifier(model):
        methods[LABEL] = model.predict
        if hasattr(model, "predict_proba"):
            methods[PROBABILITIES] = model.predict_proba
        elif hasattr(model, "decision_function"):
            methods[SCORES] = model.decision_function
    elif is_outlier_detector(model):
        methods[LABEL] = model.predict
        methods[SCORES] = model.decision_function
    elif is_regressor(model):
        methods[VARIABLE] = model.predict
    elif hasattr(model, "predict") and hasattr(model, "transform"):
        methods[LABEL] = model.predict
        methods[SCORES] = model.transform
    elif hasattr(model, "predict"):
        methods[LABEL] = model.predict
    elif hasattr(model, "transform"):
        methods[VARIABLE] = model.transform
    else:
        raise UnsupportedConversion(f"{type(model).__name__} has neither predict nor transform", "package a fitted estimator")
    return methods


def load_skops(path: Path, *, trust: bool = False) -> Any:
    """skops refuses unknown types itself; we let through the ones our allow-list accepts."""
    from packager.safety import TRUST_HINT, import_refusal
    from packager.errors import UnsafeModelError

    from packager.safety.zips import check_zip

    sio = require("skops.io", "sklearn", "reading .skops files")
    check_zip(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
        for dotted in untrusted:
            module, _, name = dotted.rpartition(".")
            reason = import_refusal(module, name)
            if reason and not trust:
                raise UnsafeModelError(f"{path.name} needs type {dotted}: {reason}", TRUST_HINT)
        return sio.load(path, trusted=untrusted)
    except UnsafeModelError:
        raise
    except Exception as exc:
        raise InputFileError(f"{path.name} cannot be read as a skops file ({type(exc).__name__}: {exc})", "re-save it with skops.io.dump") from exc


# ---------------------------------------------------------------- conversions

@converts("sklearn", to="onnx", quantize={"dynamic", "static", "fp16"})
def sklearn_to_onnx(model: Any, signature: Signature, out: Path, options) -> Any:
    """skl2onnx with ZipMap off, a dynamic batch axis, and outputs named as in the signature."""
    from packager.conversion import Artifact
    from sklearn.base import is_classifier

    skl2onnx = require("skl2onnx", "sklearn", "ONNX export of scikit-learn models")
    onnx = require("onnx", "sklearn", "ONNX export")
    _patch_skl2onnx_bool_attributes()
    kwargs: dict[str, Any] = {"initial_types": _onnx_initial_types(signature), "target_opset": options.opset}
    if is_classifier(model):
        kwargs["options"] = {"zipmap": False}
    if options.quantize and options.quantize != "auto":
        # standard MatMul/Add instead of ai.onnx.ml linear ops, so weights become quantizable tensors
        kwargs["black_op"] = {"LinearClassifier", "LinearRegressor"}
    try:
        proto = _convert_with_skl2onnx(skl2onnx, model, kwargs)
    except Exception as exc:
        raise _skl2onnx_error(model, exc) from exc
    _rename_outputs(proto, signature.output_names)
    path = out / "model.onnx"
    onnx.save(proto, str(path))
    opsets = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    return Artifact(path, {"opset": opsets, "ir_version": proto.ir_version, "converter": "skl2onnx", "converter_version": version_of("skl2onnx")})


def _convert_with_skl2onnx(skl2onnx: Any, model: Any, kwargs: dict[str, Any]) -> Any:
    """Some classifiers (LinearSVC, wrappers such as RFE) have no ZipMap option: retry without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return skl2onnx.convert_sklearn(model, **kwargs)
        except NameError as exc:
            if "zipmap" not in str(exc) or "options" not in kwargs:
                raise
            return skl2onnx.convert_sklearn(model, **{k: v for k, v in kwargs.items() if k != "options"})


def _patch_skl2onnx_bool_attributes() -> None:
    """skl2onnx 1.20 passes HistGradientBoosting's numpy-bool ``missing_go_to_left`` into an ONNX ints
    attribute, which protobuf >= 5 rejects ("Expected an int, got a boolean"). Cast it to int."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "_packager_patched", False):
        return

    def add_node(*args, **kwargs):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    add_node._packager_patched = True
    tree_ensemble.add_node = add_node


def _onnx_initial_types(signature: Signature) -> list:
    from skl2onnx.common import data_types as t

    by_dtype = {"float32": t.FloatTensorType, "float64": t.DoubleTensorType, "int64": t.Int64TensorType, "int32": t.Int32TensorType, "str": t.StringTensorType, "bool": t.BooleanTensorType}
    return [(s.name, by_dtype[s.dtype](list(s.shape))) for s in signature.inputs]


def _skl2onnx_error(model: Any, exc: Exception) -> Exception:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "shape calculator" in text or "converter" in text.lower() and "unable to find" in text.lower() or type(exc).__name__ == "MissingShapeCalculator":
        return UnsupportedConversion(
            f"skl2onnx has no ONNX converter for {type(model).__name__} ({text[:160]})",
            "use --to pmml, skops or joblib instead, or register a custom converter with skl2onnx.update_registered_converter",
        )
    if isinstance(exc, NotImplementedError) or "not supported" in text or "not implemented" in text.lower():
        return UnsupportedConversion(
            f"skl2onnx does not support this {type(model).__name__} configuration ({text[:200]})",
            "change the estimator's parameters as the message says, or use --to pmml / skops",
        )
    return ConversionError(f"skl2onnx failed on {type(model).__name__}: {type(exc).__name__}: {text[:200]}", "try another --opset, or report the model to skl2onnx")


def _rename_outputs(proto: Any, names: list[str]) -> None:
    """Give graph outputs the signature's names (positionally), rewiring the nodes that produce them."""
    renames = {}
    for output, name in zip(proto.graph.output, names):
        if output.name != name:
            renames[output.name] = name
    taken = {o for node in proto.graph.node for o in node.output} | {i.name for i in proto.graph.input}
    if any(new in taken and new not in renames for new in renames.values()):
        return  # a clash with an internal name: keep skl2onnx's names (runtime maps positionally)
    for node in proto.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for output in proto.graph.output:
        output.name = renames.get(output.name, output.name)


@converts("sklearn", to="pickle", note="runs any code on load: prefer skops for untrusted consumers")
def sklearn_to_pickle(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    path = out / "model.pkl"
    with path.open("wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return Artifact(path, {"protocol": 5})


@converts("sklearn", to="joblib")
def sklearn_to_joblib(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    joblib = require("joblib", "sklearn", "joblib export")
    path = out / "model.joblib"
    joblib.dump(model, path, compress=3)
    return Artifact(path, {"compress": 3, "joblib": version_of("joblib")})


@converts("sklearn", to="skops", note="the safe choice: loading runs no code")
def sklearn_to_skops(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    sio = require("skops.io", "sklearn", "skops export")
    path = out / "model.skops"
    try:
        sio.dump(model, path)
    except Exception as exc:
        raise ConversionError(f"skops cannot serialise {type(model).__name__}: {exc}", "use joblib or pickle for this model") from exc
    return Artifact(path, {"skops": version_of("skops")})
