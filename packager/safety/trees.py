"""scikit-learn's tree structures are trusted by its Cython code: checked before they are applied and before any use.

Measured (scikit-learn 1.9): ``Tree.__setstate__`` checks the node array's dtype and the value array's shape, never the
values; ``predict`` then walks ``nodes[left_child]`` and reads ``X[i, feature]`` without bounds checks, so a tree
whose child index is 50,000,000 segfaults in ``_tree.so`` (issue 21, finding 5). The forests and gradient boosting
call their trees with ``check_input=False`` (no width check of X against the tree), gradient boosting's
``predict_stages`` writes ``out[:, k]`` for every column of ``estimators_``, and HistGradientBoosting's predictor
indexes its bitset arrays by ``bitset_idx`` and ``f_idx_map[feature_idx]``, all unchecked.

The rules are what ``fit`` produces (verified on DecisionTree, best-first trees, forests, gradient boosting, HGB):
a node's children are both -1 (a leaf; feature -2) or both in ``(node, node_count)`` (children are numbered after
their parent, so no walk can loop), split features in ``[0, n_features)``, ``node_count`` equal to the node array's
length, values of shape ``(node_count, n_outputs, max_n_classes)``; an estimator's trees as wide as its
``n_features_in_``. Every failure is an UnsafeModelError naming the field.
"""

from __future__ import annotations

from typing import Any

from packager.errors import UnsafeModelError

HINT = "the tree arrays are inconsistent, so the file is crafted or corrupt; re-export the model from the training code"
_TREE_FIELDS = ("left_child", "right_child", "feature", "missing_go_to_left")
_PREDICTOR_FIELDS = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx", "missing_go_to_left")
TREE_CLASS = ("sklearn.tree._tree", "Tree")
PREDICTOR_CLASS = ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor")


def _refuse(label: str, what: str, hint: str = HINT) -> UnsafeModelError:
    return UnsafeModelError(f"{label}: {what}", hint)


SCHEMA_HINT = "the file is crafted or corrupt; re-export the model from the training code"


def _is_class(cls: Any, dotted: tuple[str, str]) -> bool:
    return isinstance(cls, type) and (cls.__module__, cls.__name__) == dotted


def _int(value: Any) -> int | None:
    import numpy

    if isinstance(value, (int, numpy.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numpy.ndarray) and value.shape == () and value.dtype.kind in "iu":
        return int(value)
    return None


# ------------------------------------------------------------------ sklearn.tree._tree.Tree


def check_tree_args(args: tuple, label: str) -> None:
    """``Tree(n_features, n_classes, n_outputs)``: the constructor copies ``n_outputs`` items of ``n_classes``."""
    import numpy

    if len(args) != 3:
        raise _refuse(label, f"sklearn Tree is built with {len(args)} arguments, not (n_features, n_classes, n_outputs)")
    n_features, n_classes, n_outputs = _int(args[0]), args[1], _int(args[2])
    if n_features is None or n_features < 1:
        raise _refuse(label, f"sklearn Tree n_features={args[0]!r}, not a positive integer")
    if n_outputs is None or n_outputs < 1:
        raise _refuse(label, f"sklearn Tree n_outputs={args[2]!r}, not a positive integer")
    if not (isinstance(n_classes, numpy.ndarray) and n_classes.ndim == 1 and n_classes.dtype.kind in "iu"):
        raise _refuse(label, "sklearn Tree n_classes is not a 1-d integer array")
    if len(n_classes) != n_outputs or (n_classes < 1).any():
        raise _refuse(label, f"sklearn Tree n_classes {n_classes.tolist()[:8]} does not give one positive count per output ({n_outputs})")


def check_tree_state(n_features: int, n_outputs: int, max_n_classes: int, state: Any, label: str) -> None:
    """The dict ``Tree.__setstate__`` applies: ``max_depth``, ``node_count``, ``nodes``, ``values``."""
    import numpy

    if not isinstance(state, dict) or not {"max_depth", "node_count", "nodes", "values"} <= set(state):
        raise _refuse(label, "sklearn Tree state lacks max_depth, node_count, nodes or values")
    nodes, values = state["nodes"], state["values"]
    if not (isinstance(nodes, numpy.ndarray) and nodes.ndim == 1 and nodes.dtype.names and set(_TREE_FIELDS) <= set(nodes.dtype.names)):
        raise _refuse(label, "sklearn Tree nodes is not a 1-d array of tree nodes")
    count, depth = _int(state["node_count"]), _int(state["max_depth"])
    if count is None or count < 1 or count != len(nodes):
        raise _refuse(label, f"sklearn Tree node_count={state['node_count']!r} but nodes holds {len(nodes)} (capacity)")
    if depth is None or not 0 <= depth < count:
        raise _refuse(label, f"sklearn Tree max_depth={state['max_depth']!r} for {count} nodes")
    shape = (count, n_outputs, max_n_classes)
    if not isinstance(values, numpy.ndarray) or values.shape != shape:
        raise _refuse(label, f"sklearn Tree values has shape {getattr(values, 'shape', None)}, not {shape}")
    check_tree_nodes(nodes, n_features, label)


def check_tree_nodes(nodes: Any, n_features: int, label: str) -> None:
    import numpy

    left, right, feature = (numpy.asarray(nodes[f]).astype(numpy.int64) for f in ("left_child", "right_child", "feature"))
    index = numpy.arange(len(nodes))
    leaf = left == -1
    _first_bad(label, "right_child", right, leaf & (right != -1), "a leaf (left_child -1) must have right_child -1")
    inner = ~leaf
    for name, child in (("left_child", left), ("right_child", right)):
        _first_bad(label, name, child, inner & ((child <= index) | (child >= len(nodes))), f"outside (node, {len(nodes)})")
    _first_bad(label, "feature", feature, inner & ((feature < 0) | (feature >= n_features)), f"outside 0..{n_features - 1}")
    _first_bad(label, "feature", feature, leaf & (feature != -2), "a leaf's feature must be -2")
    go_left = numpy.asarray(nodes["missing_go_to_left"]).astype(numpy.int64)
    _first_bad(label, "missing_go_to_left", go_left, (go_left != 0) & (go_left != 1), "not 0 or 1")


def _first_bad(label: str, field: str, values: Any, bad: Any, why: str) -> None:
    import numpy

    where = numpy.flatnonzero(bad)
    if len(where):
        raise _refuse(label, f"sklearn tree node {int(where[0])} has {field}={int(values[where[0]])}: {why}")


def check_live_tree(tree: Any, label: str) -> None:
    """A Tree object as loaded (skops, or an estimator's ``tree_`` after BUILD): its counters are read before its
    arrays, since ``tree.nodes`` is a view of ``node_count`` nodes over ``capacity`` allocated ones."""
    count, capacity = int(tree.node_count), int(tree.capacity)
    if not 1 <= count <= capacity:
        raise _refuse(label, f"sklearn Tree node_count={count} with capacity {capacity} (a Tree that was never filled)")
    state = tree.__getstate__()
    check_tree_state(int(tree.n_features), int(tree.n_outputs), int(tree.max_n_classes), state, label)


# ------------------------------------------------------------------ HistGradientBoosting TreePredictor


def check_predictor_state(state: Any, label: str) -> None:
    """``TreePredictor.__dict__``: ``nodes`` (PREDICTOR_RECORD_DTYPE), ``binned_left_cat_bitsets``, ``raw_left_cat_bitsets``."""
    import numpy

    if not isinstance(state, dict) or not {"nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets"} <= set(state):
        raise _refuse(label, "HistGradientBoosting TreePredictor state lacks nodes or its bitsets")
    nodes = state["nodes"]
    if not (
        isinstance(nodes, numpy.ndarray)
        and nodes.ndim == 1
        and len(nodes) >= 1
        and nodes.dtype.names
        and set(_PREDICTOR_FIELDS) <= set(nodes.dtype.names)
    ):
        raise _refuse(label, "HistGradientBoosting TreePredictor nodes is not a non-empty 1-d array of predictor nodes")
    bitsets = []
    for key in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        array = state[key]
        if not (
            isinstance(array, numpy.ndarray)
            and array.ndim == 2
            and array.shape[1] == 8
            and array.dtype == numpy.uint32
            and array.flags.c_contiguous
        ):
            raise _refuse(label, f"HistGradientBoosting TreePredictor {key} is not a C-ordered (n, 8) uint32 array")
        bitsets.append(len(array))
    field = {f: numpy.asarray(nodes[f]).astype(numpy.int64) for f in _PREDICTOR_FIELDS}
    index, leaf = numpy.arange(len(nodes)), field["is_leaf"] != 0
    _first_bad(label, "is_leaf", field["is_leaf"], (field["is_leaf"] != 0) & (field["is_leaf"] != 1), "not 0 or 1")
    for name in ("left", "right"):
        child = field[name]
        _first_bad(label, name, child, ~leaf & ((child <= index) | (child >= len(nodes))), f"outside (node, {len(nodes)})")
    _first_bad(label, "feature_idx", field["feature_idx"], ~leaf & (field["feature_idx"] < 0), "negative")
    categorical = ~leaf & (field["is_categorical"] != 0)
    _first_bad(
        label, "bitset_idx", field["bitset_idx"], categorical & (field["bitset_idx"] >= min(bitsets)), f"outside the {min(bitsets)} bitsets"
    )


def predictor_features(predictor: Any) -> tuple[int, set[int]]:
    """The largest split feature (-1 if none) and the features of categorical splits."""
    import numpy

    nodes = predictor.nodes
    inner = numpy.asarray(nodes["is_leaf"]) == 0
    features = numpy.asarray(nodes["feature_idx"]).astype(numpy.int64)
    categorical = inner & (numpy.asarray(nodes["is_categorical"]) != 0)
    return int(features[inner].max(initial=-1)), {int(f) for f in features[categorical]}


# ------------------------------------------------------------------ estimators holding trees


def check_native_call(func: Any, args: tuple, label: str) -> None:
    """Before the unpickler calls a tree class (REDUCE, NEWOBJ: Tree's ``__cinit__`` runs either way)."""
    if _is_class(func, TREE_CLASS):
        check_tree_args(tuple(args), label)
    elif _is_class(func, PREDICTOR_CLASS) and args:
        names = ("nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets")
        check_predictor_state(dict(zip(names, args, strict=False)), label)


def check_state(obj: Any, state: Any, label: str) -> None:
    """Before BUILD applies ``state`` to ``obj``."""
    if _is_class(type(obj), TREE_CLASS):
        check_tree_state(int(obj.n_features), int(obj.n_outputs), int(obj.max_n_classes), state, label)
    elif _is_class(type(obj), PREDICTOR_CLASS):
        check_predictor_state(state[0] if isinstance(state, tuple) and state else state, label)


def check_estimator(obj: Any, label: str) -> None:
    """After an estimator's state is applied, before anything predicts: its trees against ``n_features_in_``."""
    if not type(obj).__module__.startswith("sklearn."):
        return
    attrs = getattr(obj, "__dict__", {})
    if "tree_" in attrs:
        _check_tree_owner(obj, label)
    if "_predictors" in attrs:
        _check_hist_gradient_boosting(obj, label)
    if "estimators_" in attrs and _walks_trees_unchecked(obj):
        _check_ensemble(obj, label)


def _features_in(obj: Any, label: str) -> int:
    width = _int(obj.__dict__.get("n_features_in_"))
    if width is None or width < 1:
        raise _refuse(label, f"{type(obj).__name__} holds trees but no valid n_features_in_ to check them against")
    return width


def _check_tree_owner(obj: Any, label: str) -> None:
    tree = obj.__dict__["tree_"]
    if not _is_class(type(tree), TREE_CLASS):
        raise _refuse(label, f"{type(obj).__name__}.tree_ is a {type(tree).__name__}, not a sklearn Tree")
    check_live_tree(tree, label)
    width = _features_in(obj, label)
    if int(tree.n_features) != width:
        raise _refuse(label, f"{type(obj).__name__}.tree_ n_features={int(tree.n_features)} but n_features_in_={width}")
    outputs = _int(obj.__dict__.get("n_outputs_", tree.n_outputs))
    if outputs != int(tree.n_outputs):
        raise _refuse(
            label, f"{type(obj).__name__}.tree_ n_outputs={int(tree.n_outputs)} but n_outputs_={obj.__dict__.get('n_outputs_')!r}"
        )


def _walks_trees_unchecked(obj: Any) -> bool:
    """Forests and gradient boosting predict through their trees without checking X's width per tree."""
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting

    return isinstance(obj, (BaseForest, BaseGradientBoosting))


def _flat(items: Any) -> list[Any]:
    import numpy

    if isinstance(items, numpy.ndarray):
        return list(items.ravel()) if items.dtype.hasobject else []
    return list(items) if isinstance(items, (list, tuple)) else []


def _check_ensemble(obj: Any, label: str) -> None:
    import numpy
    from sklearn.ensemble._gb import BaseGradientBoosting

    estimators = obj.__dict__["estimators_"]
    width = _features_in(obj, label)
    if isinstance(obj, BaseGradientBoosting):
        per_iteration = _int(obj.__dict__.get("n_trees_per_iteration_"))
        if not (
            isinstance(estimators, numpy.ndarray)
            and estimators.ndim == 2
            and estimators.dtype.hasobject
            and estimators.shape[1] == per_iteration
        ):
            raise _refuse(
                label,
                f"{type(obj).__name__}.estimators_ has shape {getattr(estimators, 'shape', None)}, "
                f"not (n, n_trees_per_iteration_={per_iteration})",
            )
    for index, member in enumerate(_flat(estimators)):
        tree = getattr(member, "__dict__", {}).get("tree_")
        if tree is None:
            continue
        if not _is_class(type(tree), TREE_CLASS):
            raise _refuse(label, f"{type(obj).__name__}.estimators_[{index}].tree_ is not a sklearn Tree")
        check_live_tree(tree, label)
        if int(tree.n_features) != width:
            raise _refuse(
                label, f"{type(obj).__name__}.estimators_[{index}] has n_features={int(tree.n_features)} but n_features_in_={width}"
            )
        if isinstance(obj, BaseGradientBoosting) and (int(tree.n_outputs), int(tree.max_n_classes)) != (1, 1):
            raise _refuse(label, f"{type(obj).__name__}.estimators_[{index}] is not a single-output regression tree")


def _check_hist_gradient_boosting(obj: Any, label: str) -> None:
    import numpy

    width = _features_in(obj, label)
    mapper = obj.__dict__.get("_bin_mapper")
    categorical = getattr(mapper, "is_categorical_", None)
    if categorical is not None and not (isinstance(categorical, numpy.ndarray) and categorical.shape == (width,)):
        raise _refuse(label, f"{type(obj).__name__}._bin_mapper.is_categorical_ does not have n_features_in_={width} entries")
    for iteration, predictors in enumerate(_flat(obj.__dict__["_predictors"])):
        for predictor in _flat(predictors):
            if not _is_class(type(predictor), PREDICTOR_CLASS):
                raise _refuse(label, f"{type(obj).__name__}._predictors[{iteration}] holds a {type(predictor).__name__}")
            check_predictor_state(predictor.__dict__, label)
            top, cat_features = predictor_features(predictor)
            if top >= width:
                raise _refuse(
                    label, f"{type(obj).__name__} predictor of iteration {iteration} splits on feature_idx={top}, outside 0..{width - 1}"
                )
            known = set() if categorical is None else {int(i) for i in numpy.flatnonzero(categorical)}
            if not cat_features <= known:
                raise _refuse(
                    label,
                    f"{type(obj).__name__} predictor of iteration {iteration} has a categorical split on "
                    f"non-categorical feature_idx={min(cat_features - known)}",
                )


def check_loaded(root: Any, label: str, limit: int = 1_000_000) -> None:
    """Every scikit-learn estimator reachable from ``root`` (lists, tuples, dicts, object arrays, attributes), checked
    as ``check_estimator`` does: for loaders that build the objects themselves (skops), before anything predicts."""
    import numpy

    seen: set[int] = set()
    todo = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif isinstance(obj, numpy.ndarray):
            todo.extend(_flat(obj))
        elif type(obj).__module__.startswith("sklearn."):
            check_estimator(obj, label)
            todo.extend(getattr(obj, "__dict__", {}).values())


# ------------------------------------------------------------------ skops: the raw states, before skops builds anything


def check_skops_trees(path: Any, label: str) -> None:
    """Every ``Tree`` and ``TreePredictor`` in a .skops archive's schema, its constructor arguments and state read from
    the schema and the ``.npy`` members (no pickle) and checked as the unpickler checks them, before ``skops.io.load``
    runs ``Tree.__setstate__``. A tree state built from anything but plain JSON values and arrays is refused: this reader
    cannot judge it.

    Two facts of any schema that ``skops.io.load`` trusts are checked on the way (fuzzing, issue 22's re-run: the
    trees family's two hangs, inputs 6357 and 9138, confirmed alone): skops builds one object per ``__id__`` and
    hands the first one built to every node of that id, so one mutated integer (4 -> 4294967297 in a column index)
    became a numpy ``SeedSequence``'s ``pool_size`` elsewhere, whose mixing is quadratic in it (no answer in 25 s).
    Nodes sharing an id must hold one value, and a random generator's ``pool_size`` is at most ``MAX_SEED_POOL``."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        todo = [schema]
        values: dict[Any, Any] = {}  # __id__ -> the JSON content skops will give every node of that id
        while todo:
            node = todo.pop()
            if isinstance(node, list):
                todo.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            if node.get("__loader__") == "JsonNode" and "__id__" in node:
                first = values.setdefault(_hashable(node["__id__"]), node.get("content"))
                if first != node.get("content"):
                    raise _refuse(
                        label,
                        f"two values share the object id {node['__id__']} in schema.json ({first!r:.40} and "
                        f"{node.get('content')!r:.40}); skops would give both nodes the first",
                        SCHEMA_HINT,
                    )
            if node.get("__loader__") == "RandomGeneratorNode":
                _check_seed_pool(node, label)
            dotted = (node.get("__module__"), node.get("__class__"))
            if dotted == TREE_CLASS:
                args = _skops_value(node.get("__reduce__", {}).get("args"), archive, label)
                check_tree_args(tuple(args) if isinstance(args, (list, tuple)) else (), label)
                classes = args[1]
                check_tree_state(int(args[0]), int(args[2]), int(classes.max()), _skops_value(node.get("content"), archive, label), label)
            elif dotted == PREDICTOR_CLASS:
                check_predictor_state(_skops_value(node.get("content"), archive, label), label)
            todo.extend(node.values())


MAX_SEED_POOL = 1024  # numpy's SeedSequence pool: 4 words by default; mixing it costs pool_size**2


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, str)) else repr(value)


def _check_seed_pool(node: dict[str, Any], label: str) -> None:
    import json

    seed = node.get("content", {}).get("seed_seq", {}) if isinstance(node.get("content"), dict) else {}
    pool = seed.get("content", {}).get("pool_size") if isinstance(seed, dict) and isinstance(seed.get("content"), dict) else None
    if isinstance(pool, dict) and pool.get("__loader__") == "JsonNode":
        try:
            size = json.loads(pool["content"])
        except (TypeError, ValueError, KeyError):
            raise _refuse(label, "a random generator's pool_size is not a JSON number", SCHEMA_HINT) from None
        if not isinstance(size, int) or not 0 < size <= MAX_SEED_POOL:
            raise _refuse(
                label, f"a random generator's pool_size is {size!r:.40}; numpy's is 4 (at most {MAX_SEED_POOL} accepted)", SCHEMA_HINT
            )


def _skops_value(node: Any, archive: Any, label: str) -> Any:
    import io
    import json

    import numpy

    loader = node.get("__loader__") if isinstance(node, dict) else None
    if loader == "JsonNode":
        return json.loads(node["content"])
    if loader == "NdArrayNode" and node.get("type") == "numpy":
        return numpy.load(io.BytesIO(archive.read(node["file"])), allow_pickle=False)
    if loader in ("TupleNode", "ListNode"):
        return [_skops_value(item, archive, label) for item in node["content"]]
    if loader == "DictNode":
        return {key: _skops_value(value, archive, label) for key, value in node["content"].items()}
    raise _refuse(label, f"a tree's state holds a {loader or type(node).__name__} value, which the tree check cannot read")
