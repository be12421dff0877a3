"""Walking a fitted scikit-learn model (part of the sklearn plugin): its steps and nested estimators, the columns a
ColumnTransformer selects and their categories, the text vectorizer it starts with, what kind of model it is, and which
methods give its outputs. Moved out of ``converters/sklearn.py`` unchanged (issue 22 item 5).
"""

from __future__ import annotations

from typing import Any

from packager.errors import UnsupportedConversion

LABEL, PROBABILITIES, SCORES, VARIABLE = "label", "probabilities", "scores", "variable"


def _dense(values: Any) -> Any:
    """Sparse outputs (TfidfTransformer, KNeighborsTransformer) compare as dense arrays."""
    return values.toarray() if hasattr(values, "toarray") else values


def _step_names(model: Any) -> list[str]:
    steps = getattr(model, "steps", None)
    return [type(s).__name__ for _, s in steps] if steps else []


def _is_columnar(model: Any) -> bool:
    """A ColumnTransformer selects columns by name; a HistGradientBoosting with categorical features
    (``categorical_features="from_dtype"`` or by name) reads its categories from string/category columns."""
    from sklearn.compose import ColumnTransformer

    if isinstance(model, ColumnTransformer) or _categorical_columns(model):
        return True
    return any(_is_columnar(step) for _, step in getattr(model, "steps", []) if step not in (None, "passthrough"))


def _categorical_columns(model: Any) -> list[str]:
    """Names of the columns a fitted HistGradientBoosting treats as categorical (empty for any other model)."""
    flags = getattr(model, "is_categorical_", None)
    names = getattr(model, "feature_names_in_", None)
    if flags is None or names is None:
        return []
    return [str(n) for n, flag in zip(names, flags, strict=True) if flag]  # both one per feature


def _categories_by_column(model: Any) -> dict[str, list]:
    """Column -> known categories, read from fitted encoders inside ColumnTransformers (and the one a
    HistGradientBoosting fits for its categorical columns)."""
    from sklearn.compose import ColumnTransformer

    found: dict[str, list] = {}
    if _categorical_columns(model):
        found.update(_categories_by_column(getattr(model, "_preprocessor", None)))
    if isinstance(model, ColumnTransformer):
        names = [str(n) for n in getattr(model, "feature_names_in_", [])]
        for _, transformer, columns in getattr(model, "transformers_", []):
            columns = _column_names(columns, names)
            for encoder in _walk_steps(transformer):
                categories = getattr(encoder, "categories_", None)
                if categories is not None and len(columns) == len(categories):
                    found.update({c: list(cats) for c, cats in zip(columns, categories, strict=True)})
    for _, step in getattr(model, "steps", []):
        found.update(_categories_by_column(step))
    return found


def _column_names(columns: Any, names: list[str]) -> list[str]:
    """A ColumnTransformer's column selection (names, indices or a boolean mask) as names."""
    import numpy as np

    selected = np.asarray(columns if not isinstance(columns, (str, int)) else [columns])
    if selected.dtype.kind == "b" and len(selected) == len(names):
        return [n for n, keep in zip(names, selected, strict=True) if keep]
    if selected.dtype.kind in "iu" and names:
        return [names[i] for i in selected]
    return [str(c) for c in selected]


def _walk_steps(estimator: Any):
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _walk_steps(step)


def is_ranker(model: Any) -> bool:
    """LGBMRanker, XGBRanker: scikit-learn's tags call them neither classifier nor regressor (XGBRanker says
    ``_estimator_type = "ranker"``; LGBMRanker says nothing, so its boosting library and class name tell)."""
    if getattr(model, "_estimator_type", None) == "ranker":
        return True
    return type(model).__name__.endswith("Ranker") and type(model).__module__.split(".")[0] in ("lightgbm", "xgboost", "catboost")


def kind_reason(model: Any) -> str:
    """What scikit-learn's tags (or the boosting library) say the estimator is, for the report's "which rule decided"."""
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor

    for test, what in (
        (is_ranker, "a ranker"),
        (is_classifier, "a classifier"),
        (is_outlier_detector, "an outlier detector"),
        (is_regressor, "a regressor"),
    ):
        if test(model):
            return f"{type(model).__name__} is {what}"
    what = "a clusterer" if hasattr(model, "cluster_centers_") or hasattr(model, "labels_") else "a transformer or predictor"
    return f"{type(model).__name__} is {what}"


def is_classifier_like(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


def _text_vectorizer(model: Any) -> Any:
    """The text vectorizer (CountVectorizer, TfidfVectorizer, HashingVectorizer) the model starts with, if any:
    such a model takes one string per row, not a numeric matrix."""
    from sklearn.feature_extraction.text import _VectorizerMixin

    first = model
    while getattr(first, "steps", None):
        first = first.steps[0][1]
    return first if isinstance(first, _VectorizerMixin) else None


def _nested(obj: Any, seen: set | None = None):
    """Every scikit-learn object inside a fitted model (pipeline steps, wrapped and calibrated estimators...)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _nested(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _nested(item, seen)
    elif type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
        yield obj
        for value in vars(obj).values():
            if isinstance(value, (list, tuple, dict)) or type(value).__module__.startswith("sklearn."):
                yield from _nested(value, seen)


nested = _nested  # public for the PMML plugin (its label and threshold checks walk the same estimators)


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
    elif is_regressor(model) or is_ranker(model):  # a ranker's score is a real number per row, not a label
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
