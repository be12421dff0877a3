"""Tree ensembles run by oneDAL (``daal4py``, shipped by scikit-learn-intelex): the model-building half of the
``onedal`` runtime that ``converters.compiled_trees`` registers (split out to keep that module under 500 lines).

Why oneDAL: its gradient-boosted-trees predictor walks blocks of rows through blocks of trees with vector
instructions, where scikit-learn walks every row through one tree at a time and treelite's or ONNX Runtime's
code walks each row through every tree (9.6 MB of code or nodes for the 200-tree forest: out of cache). Measured here,
1 thread, 16,384 rows, interleaved in one process (benchmarks/results/optimize.md, stop r11): RandomForest 200 trees
of depth 12 3.3x scikit-learn's predict_proba; XGBoost 500 trees 2.2x native. LightGBM is refused (float64 thresholds:
converters.compiled_trees.LIGHTGBM_FLOAT32); it ran at 7.2x, as lleaves does.

Nothing native is built or stored: the package holds the same data as a treelite package (a scikit-learn forest's
checked arrays in an ``.npz`` without pickles, XGBoost's JSON model), and the oneDAL model is
built from it in memory at load (0.8 s for 293,492 nodes). A forest becomes one oneDAL *regression* model per
probability column (binary: class 1 only) whose leaves hold the tree's class fraction divided by the number of trees:
the sum oneDAL computes is then exactly scikit-learn's average of the trees' probabilities (up to float32 order).
oneDAL sends ``x <= value`` left; scikit-learn compares float32 rows with float64 thresholds, so each threshold is
stored as the largest float32 not above it (the same comparison for every float32 row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.deps import require

EXTRA = "onedal"


def daal4py() -> Any:
    return require("daal4py", EXTRA, "the onedal tree-ensemble runtime")


def set_threads(threads: int | None) -> None:
    """oneDAL's thread count is process-wide (its TBB arena)."""
    daal4py().daalinit(int(threads or 1))


def forest_models(data: Mapping[str, Any]) -> list[Any]:
    """One oneDAL regression model per output column of a checked forest (``_forest_arrays.read_forest``)."""
    from collections import deque

    import numpy as np

    d4p = daal4py()
    counts = data["node_count"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    value = np.asarray(data["value"], dtype=np.float64)
    classifier = str(data["kind"]) == "forest-classifier"
    if classifier:  # scikit-learn's DecisionTreeClassifier.predict_proba: each node's values over their sum
        total = value.sum(axis=1, keepdims=True)
        value = value / np.where(total == 0, 1.0, total)
    columns = ([1] if value.shape[1] == 2 else list(range(value.shape[1]))) if classifier else [0]
    threshold = np.asarray(data["threshold"], dtype=np.float64)
    below = threshold.astype(np.float32)
    below = np.where(below.astype(np.float64) > threshold, np.nextafter(below, np.float32(-np.inf)), below)
    n_trees = len(counts)
    models = []
    for column in columns:
        builder = d4p.gbt_reg_model_builder(n_features=int(data["n_features"]), n_iterations=n_trees)
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            left, right = data["children_left"][start:end], data["children_right"][start:end]
            tree = builder.create_tree(int(end - start))
            queue: deque[tuple[int, dict[str, int]]] = deque([(0, {})])
            while queue:  # breadth first: oneDAL adds a node under a parent it already has
                node, where = queue.popleft()
                at = start + node
                if left[node] == -1:
                    builder.add_leaf(tree_id=tree, response=float(value[at, column] / n_trees), cover=1.0, **where)
                    continue
                parent = builder.add_split(
                    tree_id=tree,
                    feature_index=int(data["feature"][at]),
                    feature_value=float(below[at]),
                    cover=1.0,
                    default_left=int(data["missing_go_to_left"][at]),
                    **where,
                )
                queue.append((int(left[node]), {"parent_id": parent, "position": 0}))
                queue.append((int(right[node]), {"parent_id": parent, "position": 1}))
        models.append(builder.model(base_score=0.0))
    return models


def booster_model(path: Path) -> Any:
    """An XGBoost JSON file (checked by its plugin) as daal4py's converted model (its float32 thresholds and "<"
    become oneDAL's "<=" at the next float32 down: the same split for every float32 row)."""
    d4p = daal4py()
    import xgboost

    return d4p.mb.convert_model(xgboost.Booster(model_file=str(path)))


def scores(models: Any, x: Any) -> Any:
    """The raw scores: a forest's probability columns (or values), a booster's probabilities (or values)."""
    import numpy as np

    rows = np.ascontiguousarray(x, dtype=np.float32)
    if isinstance(models, list):
        d4p = daal4py()
        # one prediction object per model: reused, it answered every column with the first model it was given
        # (a 3-class iris forest: probabilities 1.0 off, caught by the zoo's validation)
        return np.column_stack(
            [np.asarray(d4p.gbt_regression_prediction(fptype="float").compute(rows, m).prediction).reshape(-1) for m in models]
        )
    if models.is_classifier_:
        return np.asarray(models.predict_proba(rows))
    return np.asarray(models.predict(rows)).reshape(rows.shape[0], -1)
