"""Validation rows drawn from what a fitted scikit-learn model knows about its training data.

A verdict reached on rows far from the data says little: standard-normal rows for unscaled features (breast_cancer
areas near 650) saturate every probability, and an int8 graph flips rows a real sample never reaches (measured:
max diff 1.0 on such rows, 0 flips on held-out rows); a diabetes MLP int8 showed max diff 39.9 on standard-normal rows
and 2.4 on the real ones. So, in this order: a leading scaler's location and spread, tree split thresholds per
feature, an imputer's statistics; encoder categories for named columns; a text vectorizer's vocabulary. Where the
model handles missing values by design (an imputer in front, HistGradientBoosting), some cells are NaN, so the NaN path of the
artifact is exercised too.
"""

from __future__ import annotations

import math
from typing import Any

NAN_FRACTION = 0.1  # of cells, where the model accepts NaN


def fitted_rows(model: Any, signature: Any, rows: int, nested, categories_by_column, text_vectorizer) -> Any:
    """Rows the plugin's ``feeds`` accepts (a float64 matrix, a table, a text table), or None when the model keeps no
    statistics to draw from. ``nested``/``categories_by_column``/``text_vectorizer`` are the plugin's walkers."""
    import numpy as np

    rng = np.random.default_rng(1)
    if text_vectorizer(model) is not None:
        vocabulary = sorted(getattr(text_vectorizer(model), "vocabulary_", {}) or [])
        if not vocabulary:
            return None
        import pandas as pd

        sentences = [" ".join(rng.choice(vocabulary, size=rng.integers(3, 13))) for _ in range(rows)]
        return pd.DataFrame({"text": sentences})
    if signature.columnar:
        return _columnar_rows(model, signature, rows, rng, categories_by_column)
    if len(signature.inputs) != 1 or signature.inputs[0].is_text:
        return None
    width = signature.inputs[0].shape[-1]
    matrix = _scaler_rows(model, width, rows, rng, nested) if width else None
    if matrix is None and width:
        matrix = _threshold_rows(model, width, rows, rng, nested)
    if matrix is None and width:
        matrix = _imputer_rows(model, width, rows, rng, nested)
    if matrix is None:
        return None
    if accepts_missing(model):
        matrix[rng.random(matrix.shape) < NAN_FRACTION] = np.nan
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        return pd.DataFrame(matrix, columns=[str(n) for n in names])
    return matrix


# Models with a missing-value path of their own: an imputer in front, or HistGradientBoosting (learns where NaN goes).
# Not every model tagged allow_nan: a forest fitted without NaN sends it down a default branch that skl2onnx does not
# reproduce (measured on the fixtures: 87% label agreement on such rows), and a pipeline can be tagged allow_nan while
# a later step refuses NaN ("Input X contains NaN"). A user whose data has NaN gives it with --sample.
MISSING_VALUE_HANDLERS = frozenset(
    {
        "SimpleImputer",
        "IterativeImputer",
        "KNNImputer",
        "MissingIndicator",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    }
)


def accepts_missing(model: Any) -> bool:
    """The model (or a pipeline's first step) is one that handles missing values by design."""
    while getattr(model, "steps", None):
        first = model.steps[0][1]
        if first in (None, "passthrough"):
            break
        model = first
    return type(model).__name__ in MISSING_VALUE_HANDLERS


def _scaler_rows(model, width, rows, rng, nested):
    import numpy as np

    for step in nested(model):  # outermost first: a pipeline's first step, or the one a wrapper holds
        mean, scale = getattr(step, "mean_", None), getattr(step, "scale_", None)
        if mean is not None and scale is not None and np.shape(mean) == (width,):
            return mean + np.asarray(scale) * rng.standard_normal((rows, width))
        low, high = getattr(step, "data_min_", None), getattr(step, "data_max_", None)
        if low is not None and high is not None and np.shape(low) == (width,):
            return rng.uniform(low, high, size=(rows, width))
    return None


def _threshold_rows(model, width, rows, rng, nested):
    """Each feature uniform over its split thresholds, widened by a tenth of their range on both sides, so rows
    fall on both sides of the splits (features never split on keep 0).

    Only finite thresholds count: a HistGradientBoosting split that sends NaN one way and every number the other
    stores +inf (a breast_cancer model fitted with 20% NaN cells has 2), and a uniform draw up to inf raised
    OverflowError, reported as an unreadable model. Such a split is exercised by the NaN cells instead."""
    import numpy as np

    # by feature, only those split on: a width read from the file (n_features_in_ = 2**31 - 1, fuzzer:
    # tests/fuzz/crashers/joblib-inspect-hang-8308) made a list per feature and spun for minutes
    thresholds: dict[int, list[float]] = {}
    steps = list(nested(model))
    for step in list(steps):  # GradientBoosting keeps its trees in a 2-D numpy array, which the walker does not enter
        members = getattr(step, "estimators_", None)
        if isinstance(members, np.ndarray):
            steps += [tree for tree in members.ravel() if hasattr(tree, "tree_")]
    for step in steps:
        tree = getattr(step, "tree_", None)
        if tree is not None and getattr(step, "n_features_in_", None) == width:
            for feature, threshold in zip(tree.feature, tree.threshold, strict=True):  # one entry per node
                if 0 <= feature < width and math.isfinite(threshold):
                    thresholds.setdefault(int(feature), []).append(float(threshold))
        for predictors in getattr(step, "_predictors", None) or []:  # HistGradientBoosting
            for predictor in predictors:
                nodes = predictor.nodes
                for node in nodes[nodes["is_leaf"] == 0]:
                    finite = math.isfinite(float(node["num_threshold"]))
                    if finite and not node["is_categorical"] and 0 <= int(node["feature_idx"]) < width:
                        thresholds.setdefault(int(node["feature_idx"]), []).append(float(node["num_threshold"]))
    if not thresholds:
        return None
    matrix = np.zeros((rows, width))
    for j, values in thresholds.items():
        if values:
            low, high = min(values), max(values)
            pad = 0.1 * (high - low) or max(abs(low), 1.0) * 0.1
            matrix[:, j] = rng.uniform(low - pad, high + pad, size=rows)
    return matrix


def _imputer_rows(model, width, rows, rng, nested):
    """Around a SimpleImputer's statistics (means or medians), spread by a tenth of their size."""
    import numpy as np

    for step in nested(model):
        stats = getattr(step, "statistics_", None)
        if stats is not None and np.shape(stats) == (width,) and np.asarray(stats).dtype.kind == "f":
            stats = np.nan_to_num(np.asarray(stats, dtype=np.float64))
            return stats + np.maximum(np.abs(stats) * 0.1, 1e-3) * rng.standard_normal((rows, width))
    return None


def _columnar_rows(model, signature, rows, rng, categories_by_column):
    """A table: known categories per encoded column, standard-normal numbers elsewhere (NaN where accepted)."""
    import numpy as np
    import pandas as pd

    categories = categories_by_column(model)
    if not any(spec.name in categories for spec in signature.inputs):
        return None
    table = {}
    for spec in signature.inputs:
        if spec.name in categories:
            values = np.asarray(categories[spec.name])
            values = values[[not (isinstance(v, float) and np.isnan(v)) for v in values]] if values.dtype.kind in "fO" else values
            table[spec.name] = rng.choice(values, size=rows)
        elif spec.is_text:
            table[spec.name] = rng.choice(np.array(["a", "b", "c"], dtype=object), size=rows)
        else:
            table[spec.name] = rng.standard_normal(rows).astype(np.float64)
    return pd.DataFrame(table)
