"""skl2onnx as the sklearn plugin drives it: which estimator is converted (search wrappers), the options and opsets
it gets, the initial types, the patches to skl2onnx (option handling, a graph check), the boundary where its failures become
packager errors, and the saved file with what is known to differ. Moved out of ``converters/sklearn.py`` unchanged
(issue 22 item 5).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from packager.contract import Artifact
from packager.deps import version_of
from packager.errors import ConversionError, UnsupportedConversion, UsageError, converting, first_line
from packager.signature import Signature

from .sklearn_walk import _categorical_columns, _nested, _text_vectorizer


def _save_onnx(onnx: Any, proto: Any, out: Path, converter: str, converted: str, estimator: Any) -> Any:
    path = out / "model.onnx"
    onnx.save(proto, str(path))
    opsets = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    version = version_of("skl2onnx") if converter == "skl2onnx" else version_of("scikit-learn")
    details = {"opset": opsets, "ir_version": proto.ir_version, "converter": converter, "converter_version": version}
    known = known_onnx_differences(estimator)  # the verdict's hint when validation fails (packager.conversion._failure_hint)
    return Artifact(path, {**details, **({"converted": converted} if converted else {}), **({"known_differences": known} if known else {})})


def known_onnx_differences(model: Any) -> list[str]:
    """Differences skl2onnx is known to make that no converter option changes, each with the target that reproduces
    the model (measured on a TF-IDF + LogisticRegression of 18 sentences: ONNX probabilities 0.0028 off, skops and
    PMML exact)."""
    found = []
    for obj in _nested(model):
        if type(obj).__name__ in ("TfidfVectorizer", "TfidfTransformer") and getattr(obj, "sublinear_tf", False):
            found.append(
                "TF-IDF with sublinear_tf=True: skl2onnx computes log(tf + 1) where scikit-learn computes 1 + log(tf), "
                "a known skl2onnx difference no option changes: use --to skops or --to pmml, which reproduce it"
            )
    return list(dict.fromkeys(found))  # a TfidfVectorizer holds a TfidfTransformer: one sentence


def _convertible(model: Any) -> tuple[Any, str]:
    """The estimator skl2onnx is given, and a note when it is not the model itself."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.model_selection._search import BaseSearchCV

    if isinstance(model, BaseSearchCV):
        if not hasattr(model, "best_estimator_"):
            raise UnsupportedConversion(
                f"{type(model).__name__} was fitted with refit=False, so it has no best_estimator_ to convert",
                "refit the search with refit=True, or pickle the estimator you chose",
            )
        inner, note = _convertible(model.best_estimator_)
        return inner, f"best_estimator_ ({type(model.best_estimator_).__name__}) of {type(model).__name__}" + (f"; {note}" if note else "")
    if isinstance(model, TransformedTargetRegressor):
        transformer = getattr(model, "transformer_", None)
        if (
            transformer is not None
            and type(transformer).__name__ == "FunctionTransformer"
            and transformer.func is None
            and transformer.inverse_func is None
        ):
            regressor = type(model.regressor_).__name__
            return model.regressor_, f"regressor_ ({regressor}) of TransformedTargetRegressor (identity target transform)"
        raise UnsupportedConversion(
            f"skl2onnx has no converter for TransformedTargetRegressor, and its regressor_ alone would predict the transformed target "
            f"(transformer {type(transformer).__name__})",
            "use --to skops, joblib or pickle for this model",
        )
    if type(model).__name__ == "VotingClassifier" and model.voting == "soft" and model.flatten_transform:
        # skl2onnx 1.20 raises NotImplementedError for flatten_transform=True (the default), which shapes transform()
        # only: predict and predict_proba, the graph's outputs, are the same weighted average either way
        import copy

        flat = copy.copy(model)
        flat.flatten_transform = False
        return flat, "VotingClassifier converted with flatten_transform=False (it changes transform only, not predict_proba)"
    return model, ""


def _refuse_categorical_splits(model: Any) -> None:
    """skl2onnx 1.20 writes HistGradientBoosting trees as numeric-threshold TreeEnsemble nodes: it has no form for a
    categorical split (a bitset of categories), and it takes one matrix input, not the model's named columns. Reached
    only for one nested in a pipeline or wrapper: the model itself goes to converters/sklearn_hgb_onnx.py."""
    for estimator in _nested(model):
        columns = _categorical_columns(estimator)
        if columns:
            raise UnsupportedConversion(
                f"skl2onnx cannot convert {type(estimator).__name__} with categorical features ({', '.join(columns)}): "
                "ONNX tree ensembles in skl2onnx have no categorical splits",
                "save the HistGradientBoosting on its own (packager converts that), use --to skops, joblib or pickle, "
                "or one-hot/ordinal-encode those columns in a ColumnTransformer before the model",
            )


def _onnx_options(model: Any) -> dict:
    """Converter options keyed by estimator id, each given only to an estimator whose converter takes it.

    ZipMap off for the estimator whose outputs are the graph's. A classifier nested in a pipeline inside a wrapper
    (CalibratedClassifierCV(make_pipeline(StandardScaler(), LinearSVC()))) gets an explicit empty entry: skl2onnx
    otherwise copies the pipeline's default ``zipmap`` onto it, and LinearSVC has no such option ("Option 'zipmap'
    not in [...]"). A text vectorizer gets a tokenizer that agrees with scikit-learn on non-ASCII text."""
    from sklearn.base import is_classifier

    options: dict = {}
    from sklearn.base import BaseEstimator

    for estimator in (e for e in _nested(model) if isinstance(e, BaseEstimator)):
        allowed = _allowed_options(estimator)
        if estimator is not model and is_classifier(estimator) and "zipmap" not in allowed:
            options[id(estimator)] = {}
        if _text_vectorizer(estimator) is estimator:
            options[id(estimator)] = _tokenizer_options(estimator)
    if _takes_zipmap(model):
        options[id(model)] = {"zipmap": False}
    return options


def _takes_zipmap(estimator: Any) -> bool:
    """A pipeline hands its zipmap option to its last step, so it takes it only if that step does."""
    while getattr(estimator, "steps", None):
        estimator = estimator.steps[-1][1]
    return "zipmap" in _allowed_options(estimator)


def _allowed_options(estimator: Any) -> dict:
    from skl2onnx._parse import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    alias = sklearn_operator_name_map.get(type(estimator))
    if alias is None:
        return {}
    try:
        return dict(get_converter(alias).get_allowed_options() or {})
    except (ValueError, AttributeError, TypeError):
        return {}


# scikit-learn's default token_pattern, and the same tokens in RE2 (onnxruntime's Tokenizer): RE2's \w and \b are
# ASCII-only, so "café" lost its "é" (measured: tf-idf diff 0.71 on "CAFÉ été"; 1e-8 with this pattern).
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"


RE2_TOKEN_PATTERN = r"[\p{L}\p{N}_][\p{L}\p{N}_]+"


def _tokenizer_options(vectorizer: Any) -> dict:
    """skl2onnx options for a text vectorizer: the RE2 form of the default token pattern, and the C.UTF-8 locale
    for lowercasing (onnxruntime's StringNormalizer defaults to en_US.UTF-8, which fails to load where that locale
    is not installed, as on this image; under "C" it leaves "É" upper-case)."""
    found: dict = {"locale": "C.UTF-8"}
    if getattr(vectorizer, "analyzer", "word") == "word" and getattr(vectorizer, "token_pattern", None) == DEFAULT_TOKEN_PATTERN:
        found["tokenexp"] = RE2_TOKEN_PATTERN
    return found


def _target_opset(opset: Any) -> dict[str, int]:
    """Opsets per domain. ``ai.onnx.ml`` defaults to 3: skl2onnx 1.20 picks version 4 for IsolationForest and then
    refuses it ("version 4 of domain 'ai.onnx.ml' not supported yet"); 3 holds every tree ensemble it writes."""
    from skl2onnx import get_latest_tested_opset_version

    parsed = parse_opset(opset)
    return {"": parsed.get("", get_latest_tested_opset_version()), "ai.onnx.ml": parsed.get("ai.onnx.ml", 3)}


def parse_opset(opset: Any) -> dict[str, int]:
    """``--opset``: ``17``, ``ai.onnx.ml=3`` or ``17,ai.onnx.ml=3`` (``ai.onnx=17`` names the default domain)."""
    if opset is None or opset == "":
        return {}
    if isinstance(opset, int):
        return {"": opset}
    if isinstance(opset, dict):
        return {("" if k in ("ai.onnx", "") else k): int(v) for k, v in opset.items()}
    found: dict[str, int] = {}
    for part in str(opset).split(","):
        domain, _, version = part.strip().rpartition("=")
        if not version.strip().isdigit():
            raise UsageError(f"--opset {opset!r} is not an opset", "write e.g. 17, ai.onnx.ml=3 or 17,ai.onnx.ml=3")
        found["" if domain.strip() in ("", "ai.onnx") else domain.strip()] = int(version)
    return found


def _patch_skl2onnx_pipeline_options() -> None:
    """skl2onnx 1.20 converts a pipeline nested in a wrapper (CalibratedClassifierCV(make_pipeline(StandardScaler(),
    LinearSVC()))) with a converter that sets zipmap=False on every classifier step, and LinearSVC's converter has
    no zipmap option ("Option 'zipmap' not in ['nocl', 'output_class_labels', 'raw_scores'] for class 'LinearSVC'").
    The same converter, setting it only on steps that take it."""
    from skl2onnx._parse import _parse_sklearn
    from skl2onnx.common import _registration
    from skl2onnx.common._apply_operation import apply_cast
    from skl2onnx.common.data_types import guess_proto_type

    registered = _registration.get_converter("SklearnPipeline")
    if getattr(registered._fct, "_packager_patched", False):
        return

    def convert_pipeline(scope, operator, container):
        inputs = outputs = operator.inputs
        steps = [step for _, step in operator.raw_operator.steps]
        # what a wrapper asked of the pipeline (CalibratedClassifierCV: raw_scores) is meant for its last step
        handed = {k: v for k, v in (scope.get_options(operator.raw_operator, fail=False) or {}).items() if k in _allowed_options(steps[-1])}
        for step in steps:
            wanted = {**({"zipmap": False} if _takes_zipmap(step) else {}), **(handed if step is steps[-1] else {})}
            if wanted:
                scope.add_options(id(step), options=wanted)
                container.add_options(id(step), options=wanted)
            outputs = _parse_sklearn(scope, step, inputs, custom_parsers=None)
            inputs = outputs
        if len(outputs) != len(operator.outputs):
            raise RuntimeError(f"Mismatch between pipeline output {len(outputs)} and last step outputs {len(operator.outputs)}.")
        for source, target in zip(outputs, operator.outputs, strict=True):
            name = scope.get_unique_operator_name(("Id" if isinstance(target.type, type(source.type)) else "Cast") + operator.onnx_name)
            if isinstance(target.type, type(source.type)):
                container.add_node("Identity", source.full_name, target.full_name, name=name)
            else:
                apply_cast(scope, source.full_name, target.full_name, container, operator_name=name, to=guess_proto_type(target.type))

    convert_pipeline._packager_patched = True  # type: ignore[attr-defined]  # marks our patch so it is applied once
    _registration.register_converter("SklearnPipeline", convert_pipeline, overwrite=True, options=registered.get_allowed_options())


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

    add_node._packager_patched = True  # type: ignore[attr-defined]  # marks our patch so it is applied once
    tree_ensemble.add_node = add_node


def _patch_skl2onnx_graph_check() -> None:
    """skl2onnx 1.20's ``OnnxOperator._verify_add_to_`` checks that every node of an algebra graph was added by walking
    every *path* to it, with no visited set. QuantileTransformer's converter builds a binary search whose steps each
    reuse the previous node several times: 85 million calls, 253 s of the 394 s scikit-learn coverage walk (cProfile,
    one QuantileTransformer of 1,000 quantiles). The same check, each node visited once."""
    from skl2onnx.algebra.onnx_operator import OnnxOperator

    if getattr(OnnxOperator._verify_add_to_, "_packager_patched", False):
        return

    def verify_add_to(self: Any) -> None:
        seen: set[int] = set()
        pending = [self]
        while pending:
            node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.state is None:
                raise RuntimeError(f"Graph was not produced for operator '{node.__class__.__name__}': {node}.")
            pending.extend(i for i in node.inputs if hasattr(i, "_verify_add_to_"))

    verify_add_to._packager_patched = True  # type: ignore[attr-defined]  # marks our patch so it is applied once
    OnnxOperator._verify_add_to_ = verify_add_to


def _patch_skl2onnx_qda_label() -> None:
    """skl2onnx 1.20 declares QuadraticDiscriminantAnalysis's label as [1, N] and computes it so (ArrayFeatureExtractor
    over an ArgMax that keeps its axis): 80 rows gave labels of shape (1, 80) where every other classifier gives (80,),
    which validation now refuses ("label: shape (1, 1) != expected (80,)"; the Nov 27 coverage table had passed it
    before shapes were compared). The same converter, its label reshaped to (N,) and declared so."""
    from onnx import TensorProto
    from skl2onnx.common import _registration
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    name = "SklearnQuadraticDiscriminantAnalysis"
    registered = _registration.get_converter(name)
    if getattr(registered._fct, "_packager_patched", False):
        return
    calculate = _registration.get_shape_calculator(name)

    def shapes(operator):
        calculate(operator)
        label = operator.outputs[0]
        label.type = (StringTensorType if isinstance(label.type, StringTensorType) else Int64TensorType)([None])

    def convert(scope, operator, container):
        label, row = operator.outputs[0].full_name, scope.get_unique_variable_name("label_1xn")
        add_node = container.add_node

        def writing_the_row(op_type, inputs, outputs, *args, **kwargs):  # the converter's label node writes `row`
            outputs = [row if o == label else o for o in ([outputs] if isinstance(outputs, str) else outputs)]
            return add_node(op_type, inputs, outputs, *args, **kwargs)

        container.add_node = writing_the_row
        try:
            registered(scope, operator, container)
        finally:
            del container.add_node  # the instance attribute goes: the class's method again
        shape = scope.get_unique_variable_name("label_shape")
        container.add_initializer(shape, TensorProto.INT64, [1], [-1])
        container.add_node("Reshape", [row, shape], [label], name=scope.get_unique_operator_name("LabelAsColumn"))

    convert._packager_patched = True  # type: ignore[attr-defined]  # marks our patch so it is applied once
    _registration.register_shape_calculator(name, shapes, overwrite=True)
    _registration.register_converter(name, convert, overwrite=True, options=registered.get_allowed_options())


def _onnx_initial_types(signature: Signature) -> list:
    from skl2onnx.common import data_types as t

    by_dtype = {
        "float32": t.FloatTensorType,
        "float64": t.DoubleTensorType,
        "int64": t.Int64TensorType,
        "int32": t.Int32TensorType,
        "str": t.StringTensorType,
        "bool": t.BooleanTensorType,
    }
    return [(s.name, by_dtype[s.dtype](list(s.shape))) for s in signature.inputs]


SKL2ONNX_OPTIONS_HINT = "change the estimator's parameters as the message says, or use --to pmml / skops"


SKL2ONNX_MISSING_HINT = "use --to pmml, skops or joblib instead, or register a custom converter with skl2onnx.update_registered_converter"


@contextlib.contextmanager
def _skl2onnx_boundary(model: Any):
    """skl2onnx's failures as ours: its typed "no converter / no shape calculator" errors are a documented limit
    (UnsupportedConversion), as is NotImplementedError; a RuntimeError saying "not supported" is the one case only
    its message tells (skl2onnx 1.20 raises plain RuntimeErrors for unsupported estimator options)."""
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    name = type(model).__name__
    try:
        with converting(
            f"skl2onnx failed on {name}",
            "try another --opset, or report the model to skl2onnx",
            mapping={
                (MissingConverter, MissingShapeCalculator): (UnsupportedConversion, SKL2ONNX_MISSING_HINT),
                NotImplementedError: (UnsupportedConversion, SKL2ONNX_OPTIONS_HINT),
            },
        ):
            yield
    except UnsupportedConversion as exc:
        if isinstance(exc.__cause__, (MissingConverter, MissingShapeCalculator)):
            cause = exc.__cause__
            from .pmml import threshold_refusal

            refusal = threshold_refusal(model)  # a hint never names a target that refuses the model too
            hint = f"use --to skops or joblib instead (PMML cannot either: {refusal})" if refusal else exc.hint
            raise UnsupportedConversion(f"skl2onnx has no ONNX converter for {name} ({first_line(cause, 160)})", hint) from cause
        raise
    except ConversionError as exc:
        text = first_line(exc.__cause__) if exc.__cause__ is not None else ""
        if "not supported" in text or "not implemented" in text.lower():
            raise UnsupportedConversion(
                f"skl2onnx does not support this {name} configuration ({text})", SKL2ONNX_OPTIONS_HINT
            ) from exc.__cause__
        raise
