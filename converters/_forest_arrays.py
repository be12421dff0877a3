"""A scikit-learn RandomForest/ExtraTrees as plain arrays (the ``.npz`` a treelite package holds, written without
pickles), read back with every index checked, and handed to treelite's C entry points: the forest half of
``converters.compiled_trees``, which registers the formats, converters and runtimes (split out to keep that module
under 500 lines); and, for an optimize search, whether treelite's gcc build of a forest is worth starting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.errors import InputFileError, UnsupportedConversion

FOREST_KINDS = ("forest-classifier", "forest-regressor")
_FOREST_ARRAYS = {
    "children_left": "int64",
    "children_right": "int64",
    "feature": "int64",
    "threshold": "float64",
    "value": "float64",
    "missing_go_to_left": "uint8",
    "n_node_samples": "int64",
    "weighted_n_node_samples": "float64",
    "impurity": "float64",
}


def forest_arrays(model: Any) -> dict[str, Any]:
    """A RandomForest/ExtraTrees (classifier or regressor) as plain arrays: what treelite's scikit-learn importer reads."""
    import numpy as np
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor

    if not isinstance(model, (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)):
        raise UnsupportedConversion(
            f"treelite here compiles RandomForest/ExtraTrees, LightGBM and XGBoost models, not {type(model).__name__}",
            "use --to onnx for other models",
        )
    if model.n_outputs_ != 1:  # a multi-output regressor passed here and failed at load as an unreadable package (exit 4)
        raise UnsupportedConversion(
            f"{type(model).__name__} has {model.n_outputs_} outputs: the compiled tree runtimes take one", "use --to onnx for this forest"
        )
    classifier = isinstance(model, (RandomForestClassifier, ExtraTreesClassifier))
    if classifier and (model.n_outputs_ != 1 or not np.issubdtype(np.asarray(model.classes_).dtype, np.number)):
        raise UnsupportedConversion(
            "treelite here compiles single-output forests with numeric class labels", "use --to onnx for this forest"
        )
    trees = [e.tree_ for e in model.estimators_]
    out: dict[str, Any] = {
        "kind": np.array(FOREST_KINDS[0] if classifier else FOREST_KINDS[1]),
        "n_features": np.array(model.n_features_in_, dtype=np.int64),
        "n_outputs": np.array(model.n_outputs_, dtype=np.int64),
        "node_count": np.array([t.node_count for t in trees], dtype=np.int64),
        "classes": np.asarray(model.classes_ if classifier else [], dtype=np.float64),
    }
    for name, dtype in _FOREST_ARRAYS.items():
        parts = [np.asarray(getattr(t, name)) for t in trees]
        out[name] = np.concatenate([p.reshape(p.shape[0], -1) if name == "value" else p for p in parts]).astype(dtype)
    return out


def read_forest(path: Path) -> dict[str, Any]:
    """The forest's arrays, every index checked: children inside the tree (or -1 at leaves), features below
    n_features, shapes consistent. treelite's importer trusts these arrays (a wrong child index reads out of bounds)."""
    import numpy as np

    def bad(why: str) -> InputFileError:
        return InputFileError(f"{Path(path).name}: {why}", "re-create the package with `packager convert --to treelite`")

    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:  # a zip or array header numpy refuses
        raise bad(f"not a readable forest .npz ({type(exc).__name__})") from None
    need = {"kind", "n_features", "n_outputs", "node_count", "classes", *_FOREST_ARRAYS}
    if set(data) != need:
        raise bad(f"holds arrays {sorted(data)}, expected {sorted(need)}")
    kind = str(data["kind"])
    if kind not in FOREST_KINDS:
        raise bad(f"unknown forest kind {kind!r}")
    counts = data["node_count"]
    if counts.ndim != 1 or counts.dtype != np.int64 or len(counts) == 0 or (counts < 1).any():
        raise bad("node_count must be positive int64 counts, one per tree")
    total, n_features = int(counts.sum()), int(data["n_features"])
    if data["n_outputs"] != 1 or n_features < 1:
        raise bad("only single-output forests with at least one feature are read")
    for name, dtype in _FOREST_ARRAYS.items():
        array = data[name]
        if array.dtype != np.dtype(dtype) or array.shape[0] != total or (name != "value" and array.ndim != 1):
            raise bad(f"{name} must be {dtype} with {total} rows")
    n_classes = len(data["classes"]) if kind == FOREST_KINDS[0] else 1
    if data["value"].ndim != 2 or data["value"].shape[1] != n_classes or (kind == FOREST_KINDS[0] and n_classes < 2):
        raise bad(f"value must have {n_classes} columns")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for t, (start, end) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        left, right, feature = data["children_left"][start:end], data["children_right"][start:end], data["feature"][start:end]
        size = end - start
        leaf = left == -1
        if not np.array_equal(leaf, right == -1):
            raise bad(f"tree {t}: a node has one child")
        inner = ~leaf
        if (
            (left[inner] <= np.arange(size)[inner])
            | (left[inner] >= size)
            | (right[inner] <= np.arange(size)[inner])
            | (right[inner] >= size)
        ).any():
            raise bad(f"tree {t}: a child index points outside the tree or backwards")
        if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
            raise bad(f"tree {t}: a split feature is outside 0..{n_features - 1}")
    return data


def treelite_forest(data: Mapping[str, Any]) -> Any:
    """A treelite Model from checked forest arrays, through the C entry points its scikit-learn importer calls."""
    import ctypes

    import numpy as np
    from treelite.core import _LIB, _check_call
    from treelite.model import Model
    from treelite.sklearn.importer import ArrayOfArrays
    from treelite.util import c_array

    counts = data["node_count"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_classes = len(data["classes"]) if str(data["kind"]) == FOREST_KINDS[0] else 1
    arrays = {name: ArrayOfArrays(dtype=np.dtype(dtype).type if dtype != "uint8" else np.uint8) for name, dtype in _FOREST_ARRAYS.items()}
    for start, end in zip(offsets[:-1], offsets[1:], strict=True):
        for name, dtype in _FOREST_ARRAYS.items():
            part = data[name][start:end]
            arrays[name].add(np.ascontiguousarray(part.reshape(-1, 1, n_classes) if name == "value" else part, dtype=dtype))
    handle = ctypes.c_void_p()
    common = [arrays[n].as_c_array() for n in _FOREST_ARRAYS]
    trees, features = ctypes.c_int(len(counts)), ctypes.c_int(int(data["n_features"]))
    node_count = c_array(ctypes.c_int64, [int(c) for c in counts])
    if str(data["kind"]) == FOREST_KINDS[0]:
        classes = np.array([n_classes], dtype=np.int32)
        _check_call(
            _LIB.TreeliteLoadSKLearnRandomForestClassifierEx(
                trees,
                features,
                ctypes.c_int(1),
                classes.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                node_count,
                *common,
                ctypes.byref(handle),
            )
        )
    else:
        _check_call(
            _LIB.TreeliteLoadSKLearnRandomForestRegressorEx(trees, features, ctypes.c_int(1), node_count, *common, ctypes.byref(handle))
        )
    return Model(handle=handle)


def total_nodes(model: Any) -> int:
    """Nodes (splits and leaves) of a forest or a LightGBM/XGBoost estimator (or a pipeline ending in one): what
    tl2cgen turns into code, so what its gcc build time and code size grow with."""
    estimator = model.steps[-1][1] if getattr(model, "steps", None) else model
    if hasattr(estimator, "estimators_") and hasattr(estimator.estimators_[0], "tree_"):
        return int(sum(e.tree_.node_count for e in estimator.estimators_))
    if hasattr(estimator, "booster_"):  # LightGBM: a tree of n leaves has 2n - 1 nodes
        return int(sum(2 * t["num_leaves"] - 1 for t in estimator.booster_.dump_model()["tree_info"]))
    if hasattr(estimator, "get_booster"):  # XGBoost: one line per node in the text dump
        return int(sum(len([line for line in tree.splitlines() if line.strip()]) for tree in estimator.get_booster().get_dump()))
    return 0


# gcc time per node (one unit per tree, -O1): 657 s for 293,492 nodes at load 19, 60 s for 28,672 at load 16 (2.1-2.2
# ms); and speed: 28,672 nodes (0.95 MB of code, inside this CPU's 1 MB L2) ran at ~1.1x native, 293,492 (9.6 MB) at
# 0.24x. Above WIN_NODES (3.5x the largest forest measured to win; an estimate between two measurements) a search
# skips treelite: minutes of gcc for a library that walks each row through more code than the cache holds.
SECONDS_PER_NODE, WIN_NODES = 0.0023, 100_000


def worth_building(model: Any, search_seconds: Any) -> None:
    """Only in an optimize search (``search_seconds`` given): refuse, with the estimate, a forest whose build cannot
    finish in the time left or whose code cannot win. An explicit ``--to treelite`` always builds."""
    if search_seconds is None:
        return
    nodes = total_nodes(model)
    estimate = nodes * SECONDS_PER_NODE
    if nodes > WIN_NODES:
        raise UnsupportedConversion(
            f"skipped in the search: {nodes:,} nodes (~{estimate:.0f} s of gcc) compile to code far beyond the cache, "
            f"measured 0.24x native at 293,492 nodes",
            "--to treelite builds it anyway; onedal or onnx run large forests",
        )
    if str(search_seconds) != "none" and estimate > float(search_seconds):
        raise UnsupportedConversion(
            f"skipped in the search: ~{estimate:.0f} s of gcc for {nodes:,} nodes, {float(search_seconds):.0f} s left",
            "give a longer --time-budget",
        )
