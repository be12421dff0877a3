"""scikit-learn: load (safely), infer the signature, predict natively, convert to ONNX and re-serialize.

Columnar models (a ColumnTransformer selecting pandas columns by name) get one (batch, 1) input per
column, so string categories travel as strings into ONNX and PMML; every other model gets one
float32 matrix input ``X``.

This module is what the registry loads (the framework, loading, the conversions); its parts: walking the fitted model
(``sklearn_walk``), its inputs and sample rows (``sklearn_inputs``), skl2onnx's options, patches and error boundary
(``sklearn_skl2onnx``), rows drawn from fitted statistics (``sklearn_rows``) and the categorical HistGradientBoosting
graph (``sklearn_hgb_onnx``).
"""

from __future__ import annotations

import pickle
import warnings
import weakref
from pathlib import Path
from typing import Any, Mapping

from packager.columns import restore_onnx_input_names
from packager.contract import Artifact, Framework
from packager.deps import require, version_of
from packager.errors import (
    ConversionError,
    InputFileError,
    PackagerWarning,
    SampleError,
    UnsupportedConversion,
    UsageError,
    first_line,
)
from packager.plugins import converts, framework
from packager.signature import Signature, TensorSpec

from .shared import column_feeds, rename_onnx_outputs, tree_converters_for
from .sklearn_hgb_onnx import hgb_to_onnx, is_categorical_hgb
from .sklearn_inputs import TEXT, _as_matrix, _column_spec, _input_float, _native_input, _synthesize, _synthesize_text, _text_column
from .sklearn_skl2onnx import (
    _convertible,
    _onnx_initial_types,
    _onnx_options,
    _patch_skl2onnx_bool_attributes,
    _patch_skl2onnx_graph_check,
    _patch_skl2onnx_pipeline_options,
    _patch_skl2onnx_qda_label,
    _refuse_categorical_splits,
    _save_onnx,
    _skl2onnx_boundary,
    _target_opset,
    parse_opset,
)
from .sklearn_walk import (
    LABEL,
    PROBABILITIES,
    SCORES,
    _categories_by_column,
    _dense,
    _is_columnar,
    _nested,
    _output_methods,
    _step_names,
    _text_vectorizer,
    is_classifier_like,
    kind_reason,
)

_PICKLED_WITH: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def _container_hint(model: Any) -> str:
    """Where a dict, list or tuple holds the model (a common way to save a model with its metadata), the hint names the
    entry to save on its own, rather than telling the user to pickle what they believe they pickled."""
    entries = model.items() if isinstance(model, dict) else enumerate(model) if isinstance(model, (list, tuple)) else ()
    for key, value in entries:
        if Sklearn.claims(value) or _claimed_elsewhere(value):
            return (
                f"its entry [{key!r}] is a {type(value).__qualname__}: save that object on its own "
                f"(joblib.dump(obj[{key!r}], 'model.joblib')) and convert that file"
            )
    return ""


@framework("sklearn")
class Sklearn(Framework):
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
        if not self.claims(model) and not _claimed_elsewhere(model):
            raise UnsupportedConversion(
                f"{path.name} holds a {type(model).__module__}.{type(model).__qualname__}, not a scikit-learn estimator",
                _container_hint(model) or "pickle the fitted estimator or pipeline itself",
            )
        pickled_with = [
            str(getattr(w.message, "original_sklearn_version", ""))
            for w in caught
            if type(w.message).__name__ == "InconsistentVersionWarning"
        ]
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
        if _text_vectorizer(model) is not None:
            return Signature((TensorSpec(TEXT, "str", (None, 1)),))
        names = getattr(model, "feature_names_in_", None)
        if names is not None and _is_columnar(model):
            return Signature(tuple(_column_spec(model, str(n), sample) for n in names), columnar=True)
        width = getattr(model, "n_features_in_", None)
        if width is None and sample is not None:
            width = _as_matrix(sample).shape[1]
        if width is None:
            raise UsageError(
                f"cannot tell how many features {type(model).__name__} takes",
                "give --sample FILE or --input-shape 1,N",
            )
        known = tuple(str(n) for n in names) if names is not None and len(names) == int(width) else None
        return Signature((TensorSpec("X", _input_float(model), (None, int(width)), names=known),))

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        """The sample as the artifact takes it (the signature's dtypes: float32 numbers)."""
        return self._feeds(model, signature, sample, full_precision=False)

    def source_input(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any] | None:
        """The sample as the user feeds the source: float64 numbers, NaN and strings kept (None: no sample)."""
        return None if sample is None else self._feeds(model, signature, sample, full_precision=True)

    def fitted_rows(self, model: Any, signature: Signature, rows: int) -> Any:
        """Rows from the fitted statistics (scalers, split thresholds, imputers, categories, vocabulary), or None."""
        from .sklearn_rows import fitted_rows

        return fitted_rows(model, signature, rows, _nested, _categories_by_column, _text_vectorizer)

    def output_kinds(self, model: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
        """A classifier's label and probabilities; decision scores over classes; everything else a regression
        (a regressor's predictions, a transformer's columns, a 1-D decision score)."""
        import numpy as np

        from packager.validation import OutputKind

        kinds = {LABEL: OutputKind.LABELS, PROBABILITIES: OutputKind.PROBABILITIES}
        found = {}
        why = kind_reason(model)  # the report says which rule decided (issue 26: a ranker's score judged as labels)
        for name, value in expected.items():
            array = np.asarray(value)
            if name in kinds:
                found[name] = (kinds[name], why)
            elif name == SCORES and array.ndim == 2 and array.shape[1] >= 2 and is_classifier_like(model):
                found[name] = (OutputKind.SCORES, why)
            elif array.dtype.kind in "OUSb":
                found[name] = (OutputKind.LABELS, why)
            else:
                found[name] = (OutputKind.REGRESSION, why)
        return found

    def _feeds(self, model: Any, signature: Signature, sample: Any, full_precision: bool) -> dict[str, Any]:
        if _text_vectorizer(model) is not None:
            return {TEXT: _synthesize_text(model) if sample is None else _text_column(sample)}
        if sample is None:
            return _synthesize(model, signature)
        if signature.columnar:
            return column_feeds(signature, sample, full_precision)
        matrix = _as_matrix(sample).astype("float64" if full_precision else signature.inputs[0].dtype)
        expected = signature.inputs[0].shape[1]
        if matrix.ndim != 2 or matrix.shape[1] != expected:
            raise UsageError(
                f"the sample has shape {matrix.shape}, but the model takes {expected} features", "give a sample with one column per feature"
            )
        return {"X": matrix}

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        X = _native_input(model, signature, feeds)
        methods = _output_methods(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return {name: _dense(method(X)) for name, method in methods.items()}
        except Exception as exc:
            raise SampleError(
                f"{type(model).__name__} itself fails on the sample inputs ({type(exc).__name__}: {first_line(exc)})",
                "give --sample FILE with rows like the training data",
            ) from exc

    def serve(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every output in one pass: a classifier's label is the argmax of its probabilities (``bench``
        checks this matches ``predict`` before timing it), so it is not computed twice."""
        methods = _output_methods(model)
        if set(methods) != {LABEL, PROBABILITIES} or not hasattr(model, "classes_"):
            return self.predict(model, signature, feeds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probabilities = model.predict_proba(_native_input(model, signature, feeds))
        return {LABEL: model.classes_[probabilities.argmax(axis=1)], PROBABILITIES: probabilities}


def _claimed_elsewhere(model: Any) -> bool:
    """A pickle may hold the scikit-learn-API estimator of a library that is no scikit-learn subclass (CatBoostClassifier):
    its own framework plugin takes it from here (the loader hands it over)."""
    from packager.plugins import default_registry

    try:
        return default_registry().framework_for_object(model) != "sklearn"
    except UnsupportedConversion:
        return False


def load_skops(path: Path, *, trust: bool = False) -> Any:
    """skops refuses unknown types itself; we let through the ones our allow-list accepts."""
    from packager.errors import UnsafeModelError
    from packager.safety import TRUST_HINT, import_refusal
    from packager.safety.trees import check_loaded, check_skops_trees
    from packager.safety.zips import check_zip

    sio = require("skops.io", "sklearn", "reading .skops files")
    check_zip(path)
    try:
        if not trust:
            check_skops_trees(path, path.name)  # before skops runs Tree.__setstate__ (skops itself never trusts Tree)
        untrusted = sio.get_untrusted_types(file=path)
        for dotted in untrusted:
            module, _, name = dotted.rpartition(".")
            reason = import_refusal(module, name)
            if reason and not trust:
                raise UnsafeModelError(f"{path.name} needs type {dotted}: {reason}", TRUST_HINT)
        model = sio.load(path, trusted=untrusted)
    except UnsafeModelError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"{path.name} cannot be read as a skops file ({type(exc).__name__}: {exc})", "re-save it with skops.io.dump"
        ) from exc
    if not trust:
        check_loaded(model, path.name)  # trees skops would not trust (it lists sklearn Tree as untrusted): before any predict
    return model


@converts("sklearn", to="onnx", quantize={"dynamic", "static", "fp16"})
def sklearn_to_onnx(model: Any, signature: Signature, out: Path, options) -> Any:
    """skl2onnx with ZipMap off, a dynamic batch axis, and outputs named as in the signature.

    Search wrappers (GridSearchCV, RandomizedSearchCV...) convert their ``best_estimator_`` (it is what their
    predict calls); the manifest says so under ``converted``."""
    skl2onnx = require("skl2onnx", "sklearn", "ONNX export of scikit-learn models")
    onnx = require("onnx", "sklearn", "ONNX export")
    _patch_skl2onnx_bool_attributes()
    _patch_skl2onnx_pipeline_options()
    _patch_skl2onnx_graph_check()
    _patch_skl2onnx_qda_label()
    estimator, converted = _convertible(model)
    if is_categorical_hgb(estimator):  # skl2onnx has no categorical split: our own TreeEnsemble graph (ai.onnx.ml 5)
        proto = hgb_to_onnx(estimator, signature, parse_opset(options.opset))
        return _save_onnx(onnx, proto, out, "packager (sklearn_hgb_onnx)", converted, estimator)
    for trees in tree_converters_for(estimator):
        trees.register_skl2onnx()
    _refuse_categorical_splits(estimator)
    kwargs: dict[str, Any] = {
        "initial_types": _onnx_initial_types(signature),
        "target_opset": _target_opset(options.opset),
        "options": _onnx_options(estimator),
    }
    if options.quantize and options.quantize != "auto":
        # standard MatMul/Add instead of ai.onnx.ml linear ops, so weights become quantizable tensors
        kwargs["black_op"] = {"LinearClassifier", "LinearRegressor"}
    try:
        with _skl2onnx_boundary(estimator), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = skl2onnx.convert_sklearn(estimator, **kwargs)
    except UnsupportedConversion as exc:
        if "black_op" not in kwargs:
            raise
        # the MatMul form --quantize needs, not the estimator's parameters (LinearSVC, RidgeClassifier: "post_transform
        # 'NONE' is not supported with double"; the hint sent users to parameters that do not exist: outside user)
        raise UnsupportedConversion(
            f"skl2onnx cannot write {type(estimator).__name__} with MatMul weights, which --quantize {options.quantize} needs ({exc.what})",
            "convert without --quantize (the fp32 ONNX converts), or give --quantize auto, which keeps fp32 and records why",
        ) from exc
    rename_onnx_outputs(proto, signature.output_names)
    if signature.columnar:  # one input per column: skl2onnx renamed "od280/od315_of_diluted_wines" (load_wine's frame)
        restore_onnx_input_names(proto, signature.input_names, "the model's columns")
    return _save_onnx(onnx, proto, out, "skl2onnx", converted, estimator)


@converts("sklearn", to="pickle", note="runs any code on load: prefer skops for untrusted consumers")
def sklearn_to_pickle(model: Any, signature: Signature, out: Path, options) -> Any:
    path = out / "model.pkl"
    with path.open("wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return Artifact(path, {"protocol": 5})


@converts("sklearn", to="joblib")
def sklearn_to_joblib(model: Any, signature: Signature, out: Path, options) -> Any:
    joblib = require("joblib", "sklearn", "joblib export")
    path = out / "model.joblib"
    joblib.dump(model, path, compress=3)
    return Artifact(path, {"compress": 3, "joblib": version_of("joblib")})


@converts("sklearn", to="skops", note="the safe choice: loading runs no code")
def sklearn_to_skops(model: Any, signature: Signature, out: Path, options) -> Any:
    sio = require("skops.io", "sklearn", "skops export")
    path = out / "model.skops"
    try:
        sio.dump(model, path)
    except Exception as exc:
        raise ConversionError(f"skops cannot serialise {type(model).__name__}: {exc}", "use joblib or pickle for this model") from exc
    return Artifact(path, {"skops": version_of("skops")})
