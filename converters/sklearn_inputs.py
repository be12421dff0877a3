"""A scikit-learn model's inputs (part of the sklearn plugin): the signature's column specs, sample rows read as a
matrix or a text column, synthesized rows, and the input as the source model is fed (float64, or float32 where a step
keeps float32) next to what the ONNX graph takes. Moved out of ``converters/sklearn.py`` unchanged (issue 22 item 5).
"""

from __future__ import annotations

from typing import Any, Mapping

from packager.errors import UsageError
from packager.signature import Signature, TensorSpec, synthesize

from .shared import foreign_estimators, tree_converters_for
from .sklearn_walk import _categories_by_column, _nested, _text_vectorizer

TEXT = "text"  # the one input of a model that starts with a text vectorizer: a (batch, 1) string column


DEFAULT_ROWS = 200


def _column_spec(model: Any, name: str, sample: Any) -> TensorSpec:
    import numpy as np

    if sample is not None and hasattr(sample, "columns") and name in sample.columns:
        column = sample[name]
        kind = np.asarray(column.cat.categories if str(column.dtype) == "category" else column).dtype.kind
    else:
        categories = _categories_by_column(model).get(name)
        kind = np.asarray(categories).dtype.kind if categories is not None else "f"
    dtype = "str" if kind in "OUS" else "int64" if kind in "iub" else _input_float(model)
    return TensorSpec(name, dtype, (None, 1))


def _as_matrix(sample: Any):
    import numpy as np

    if isinstance(sample, dict):
        if len(sample) != 1:
            raise UsageError("the sample has several arrays but the model takes one matrix", "give a single array")
        sample = next(iter(sample.values()))
    array = sample.to_numpy() if hasattr(sample, "to_numpy") else np.asarray(sample)
    if array.dtype.kind in "OUS":
        raise UsageError(
            "the sample has text columns, but the model takes a numeric matrix", "encode them, or pass the pipeline that encodes them"
        )
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _text_column(sample: Any) -> Any:
    """A (rows, 1) object array of strings from a table with one text column (or a column named "text"),
    a 1-D array or list of strings, or a one-array dict."""
    import numpy as np

    if isinstance(sample, dict):
        if len(sample) != 1:
            raise UsageError(f"the sample has arrays {sorted(sample)}, but the model takes one text column", "give one array of strings")
        sample = next(iter(sample.values()))
    if hasattr(sample, "columns"):
        text = [c for c in sample.columns if sample[c].dtype.kind in "OUS" or str(sample[c].dtype) in ("string", "category")]
        if TEXT in sample.columns:
            text = [TEXT]
        if len(text) != 1:
            raise UsageError(
                f"the model takes one text column, but the sample has {len(text)} text columns ({', '.join(map(str, text)) or 'none'})",
                f"give a table with one text column (or name it {TEXT!r}), or a .txt file with one text per line",
            )
        sample = sample[text[0]].to_numpy()
    values = np.asarray(sample, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or not all(isinstance(v, str) for v in values):
        raise UsageError(
            "the model takes one text per row, but the sample is not a column of strings",
            "give a .txt file (one text per line) or a table with one text column",
        )
    return values.reshape(-1, 1)


def _synthesize_text(model: Any) -> Any:
    """Sentences of 3-12 words drawn from the fitted vocabulary (stop words and the longest n-grams come out too),
    so the sample exercises the tokenizer and the weights of known words."""
    import numpy as np

    vocabulary = sorted(getattr(_text_vectorizer(model), "vocabulary_", {}) or ["alpha", "beta", "gamma"])
    rng = np.random.default_rng(1)
    sentences = [" ".join(rng.choice(vocabulary, size=rng.integers(3, 13))) for _ in range(DEFAULT_ROWS)]
    return np.asarray(sentences, dtype=object).reshape(-1, 1)


def _synthesize(model: Any, signature: Signature) -> dict[str, Any]:
    """Standard-normal rows (the last resort, flagged as synthetic in the report), with NaN cells where the model
    accepts missing values, so a NaN path that breaks in the artifact shows."""
    import numpy as np

    from .sklearn_rows import NAN_FRACTION, accepts_missing

    feeds = synthesize(signature, rows=DEFAULT_ROWS)
    if accepts_missing(model):
        rng = np.random.default_rng(2)
        for array in feeds.values():
            if array.dtype.kind == "f":
                array[rng.random(array.shape) < NAN_FRACTION] = np.nan
    return feeds


def _native_input(model: Any, signature: Signature, feeds: Mapping[str, Any]):
    """The input as the user would feed the source model: float64 numbers (feeds are float32 because the
    artifact declares float32; widening is exact), text as a 1-D array of strings, tables as DataFrames."""
    import pandas as pd

    if _text_vectorizer(model) is not None:
        return feeds[TEXT].reshape(-1)
    dtype = _source_float(model)
    if signature.columnar:
        return pd.DataFrame({name: _widen(feeds[name].reshape(-1), dtype) for name in signature.input_names})
    names = getattr(model, "feature_names_in_", None)
    X = _widen(feeds[signature.inputs[0].name], dtype)
    return pd.DataFrame(X, columns=[str(n) for n in names]) if names is not None else X


def _widen(values: Any, dtype: str) -> Any:
    return values.astype(dtype) if values.dtype.kind == "f" else values


def _input_float(model: Any) -> str:
    """float32 unless a step compares float64 inputs with float64 split thresholds (LightGBM): then float32 feeds would move
    rows near a threshold to the other branch, in the artifact and in the validation's own source run. A float32-split
    booster (XGBoost, CatBoost) after other steps also takes float64: those steps run in double as in scikit-learn and the
    graph rounds to float32 once before the trees, as the library does (converters._sklearn_api.float32_trees)."""
    trees = tree_converters_for(model)
    if any(t.split_dtype == "float64" for t in trees):
        return "float64"
    return "float64" if trees and not any(e is model for e in foreign_estimators(model)) else "float32"


def _source_float(model: Any) -> str:
    """float64, unless a step keeps float32 centroids: KMeans/MiniBatchKMeans keep the dtype they were fitted
    on and their Cython predict refuses the other one (measured, scikit-learn 1.9: "Buffer dtype mismatch,
    expected 'const float' but got 'double'", and the reverse for float64 centroids fed float32)."""
    for estimator in _nested(model):
        dtype = getattr(getattr(estimator, "cluster_centers_", None), "dtype", None)
        if dtype is not None and dtype.name == "float32":
            return "float32"
    return "float64"
