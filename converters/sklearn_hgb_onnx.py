"""HistGradientBoosting with categorical features as an ONNX graph of our own (skl2onnx 1.20 has no categorical split).

ONNX-ML's ``TreeEnsemble`` (ai.onnx.ml opset 5, run by onnxruntime) has set-membership splits (``BRANCH_MEMBER``), which is
what a HistGradientBoosting categorical split is: the categories in the node's left bitset go left. The graph rebuilds
the model's own preprocessing first (its ``_preprocessor``: an OrdinalEncoder for the categorical columns, unknown
categories encoded as NaN, then the numeric columns as they are), in the order the trees index features:

    each categorical column -> LabelEncoder (category -> code, unknown -> NaN) -+
    each numeric column -> Cast to double ---------------------------------------+-> Concat -> TreeEnsemble (double)
    -> + baseline -> the loss's inverse link (sigmoid / softmax / identity / exp) -> probabilities, label (or variable)

scikit-learn's predictor sends NaN (missing or unknown category) the way ``missing_go_to_left`` says, a known category in
the left bitset left and every other known one right: ``nodes_missing_value_tracks_true`` with the true branch on the
left does exactly that. Comparisons run in double, as scikit-learn's do (on the float32 values of the signature).
"""

from __future__ import annotations

from typing import Any

ML_OPSET = 5  # ai.onnx.ml: TreeEnsemble with BRANCH_MEMBER
MIN_OPSET = 13  # every ai.onnx operator used here (Softmax on one axis, ArgMax, Gather, Cast)
DEFAULT_OPSET = 21
LEQ, MEMBER = 0, 6  # nodes_modes values


def is_categorical_hgb(model: Any) -> bool:
    """A fitted HistGradientBoosting with at least one categorical feature."""
    flags = getattr(model, "is_categorical_", None)
    return type(model).__name__.startswith("HistGradientBoosting") and flags is not None and bool(flags.any())


def hgb_to_onnx(model: Any, signature: Any, opsets: dict[str, int]) -> Any:
    """The ModelProto for ``model``, its inputs and outputs named as in ``signature``; ``opsets`` as --opset parses them."""
    from onnx import TensorProto, helper

    from packager.errors import UnsupportedConversion

    main_opset = opsets.get("", DEFAULT_OPSET)
    if main_opset < MIN_OPSET or opsets.get("ai.onnx.ml", ML_OPSET) < ML_OPSET:
        raise UnsupportedConversion(
            f"a categorical HistGradientBoosting graph needs ONNX opset {MIN_OPSET}+ and ai.onnx.ml {ML_OPSET} (set-membership "
            f"splits); asked: {main_opset}, ai.onnx.ml {opsets.get('ai.onnx.ml', ML_OPSET)}",
            f"drop --opset, or give --opset {DEFAULT_OPSET},ai.onnx.ml={ML_OPSET}",
        )
    nodes: list[Any] = []
    inputs = [_graph_input(spec) for spec in signature.inputs]
    features = _feature_columns(model, signature, nodes)
    nodes.append(helper.make_node("Concat", features, ["features"], axis=1))
    nodes.append(_tree_ensemble(model, "features", "raw"))
    baseline = helper.make_tensor(
        "baseline", TensorProto.DOUBLE, [1, model.n_trees_per_iteration_], [float(v) for v in model._baseline_prediction.ravel()]
    )
    nodes.append(helper.make_node("Add", ["raw", "baseline"], ["score"]))
    outputs, initializers = _outputs(model, signature, nodes)
    graph = helper.make_graph(nodes, "hist_gradient_boosting", inputs, outputs, initializer=[baseline, *initializers])
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", main_opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="packager.converters.sklearn_hgb_onnx",
    )
    proto.ir_version = 10  # opset 21 / ai.onnx.ml 5 need IR 10; onnxruntime 1.32 reads it
    return proto


def _graph_input(spec: Any) -> Any:
    from onnx import TensorProto, helper

    kinds = {
        "str": TensorProto.STRING,
        "int64": TensorProto.INT64,
        "int32": TensorProto.INT32,
        "float64": TensorProto.DOUBLE,
        "float32": TensorProto.FLOAT,
    }
    return helper.make_tensor_value_info(spec.name, kinds[spec.dtype], list(spec.shape))


def _feature_columns(model: Any, signature: Any, nodes: list[Any]) -> list[str]:
    """One (batch, 1) double tensor per tree feature, in the preprocessor's output order (categorical columns first)."""
    import numpy as np
    from onnx import helper

    preprocessor = model._preprocessor
    encoder = preprocessor.named_transformers_["encoder"]
    columns = np.arange(preprocessor.n_features_in_)
    categorical = list(columns[model.is_categorical_])
    numeric = list(columns[~model.is_categorical_])
    names: list[str] = []
    for position, (column, categories) in enumerate(zip(categorical, encoder.categories_, strict=True)):
        source, spec = _column(signature, int(column), nodes)
        codes = f"code_{position}"
        nodes.append(_category_codes(source, spec.dtype, categories, codes))
        nodes.append(helper.make_node("Cast", [codes], [f"{codes}_double"], to=11))  # 11: DOUBLE
        names.append(f"{codes}_double")
    for column in numeric:
        source, _ = _column(signature, int(column), nodes)
        nodes.append(helper.make_node("Cast", [source], [f"number_{column}"], to=11))
        names.append(f"number_{column}")
    return names


def _column(signature: Any, index: int, nodes: list[Any]) -> tuple[str, Any]:
    """The tensor holding feature ``index``: its own input (a column signature), or that column of the matrix X."""
    from onnx import helper

    if signature.columnar:
        spec = signature.inputs[index]
        return spec.name, spec
    spec = signature.inputs[0]
    name = f"column_{index}"
    indices = helper.make_tensor(f"{name}_index", 7, [1], [index])  # 7: INT64
    nodes.append(helper.make_node("Constant", [], [f"{name}_index"], value=indices))
    nodes.append(helper.make_node("Gather", [spec.name, f"{name}_index"], [name], axis=1))
    return name, spec


def _category_codes(source: str, dtype: str, categories: Any, output: str) -> Any:
    """OrdinalEncoder as a LabelEncoder: the i-th known category -> i, anything else (unknown, missing) -> NaN."""
    from onnx import helper

    known = [(i, c) for i, c in enumerate(categories) if not (isinstance(c, float) and c != c)]  # NaN: encoded as NaN anyway
    values = [float(i) for i, _ in known]
    if dtype == "str":
        return helper.make_node(
            "LabelEncoder",
            [source],
            [output],
            domain="ai.onnx.ml",
            keys_strings=[str(c) for _, c in known],
            values_floats=values,
            default_float=float("nan"),
        )
    if dtype in ("int64", "int32"):
        return helper.make_node(
            "LabelEncoder",
            [source],
            [output],
            domain="ai.onnx.ml",
            keys_int64s=[int(c) for _, c in known],
            values_floats=values,
            default_float=float("nan"),
        )
    return helper.make_node(
        "LabelEncoder",
        [source],
        [output],
        domain="ai.onnx.ml",
        keys_floats=[float(c) for _, c in known],
        values_floats=values,
        default_float=float("nan"),
    )


def _tree_ensemble(model: Any, features: str, output: str) -> Any:
    """Every tree of every iteration, tree k of an iteration adding to target k, leaves summed."""
    from onnx import TensorProto, helper

    table: dict[str, list] = {k: [] for k in ("feature", "mode", "split", "true", "false", "true_leaf", "false_leaf", "missing_true")}
    leaf_weights: list[float] = []
    leaf_targets: list[int] = []
    members: list[float] = []
    roots: list[int] = []
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            roots.append(_add_tree(predictor, target, table, leaf_weights, leaf_targets, members))
    attributes: dict[str, Any] = {
        "tree_roots": roots,
        "nodes_featureids": table["feature"],
        "nodes_modes": helper.make_tensor("modes", TensorProto.UINT8, [len(table["mode"])], table["mode"]),
        "nodes_splits": helper.make_tensor("splits", TensorProto.DOUBLE, [len(table["split"])], table["split"]),
        "nodes_truenodeids": table["true"],
        "nodes_trueleafs": table["true_leaf"],
        "nodes_falsenodeids": table["false"],
        "nodes_falseleafs": table["false_leaf"],
        "nodes_missing_value_tracks_true": table["missing_true"],
        "leaf_targetids": leaf_targets,
        "leaf_weights": helper.make_tensor("weights", TensorProto.DOUBLE, [len(leaf_weights)], leaf_weights),
        "n_targets": int(model.n_trees_per_iteration_),
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE: the baseline is added first
    }
    if members:
        attributes["membership_values"] = helper.make_tensor("members", TensorProto.DOUBLE, [len(members)], members)
    return helper.make_node("TreeEnsemble", [features], [output], domain="ai.onnx.ml", **attributes)


def _add_tree(predictor: Any, target: int, table: dict[str, list], weights: list[float], targets: list[int], members: list[float]) -> int:
    """Append one tree's interior nodes and leaves; return the index of its root in the node table."""
    nodes = predictor.nodes
    bitsets = predictor.raw_left_cat_bitsets
    interior: dict[int, int] = {}  # scikit-learn node -> row in the node table
    leaf: dict[int, int] = {}  # scikit-learn leaf -> row in the leaf table
    for index, node in enumerate(nodes):
        if node["is_leaf"]:
            leaf[index] = len(weights)
            weights.append(float(node["value"]))
            targets.append(target)
    if nodes[0]["is_leaf"]:  # a tree that is one leaf: one node whose both branches reach it (the operator's convention)
        start = len(table["feature"])
        _append(table, 0, LEQ, 0.0, (leaf[0], True), (leaf[0], True), False)
        return start
    for index, node in enumerate(nodes):
        if not node["is_leaf"]:
            interior[index] = len(table["feature"]) + len(interior)
    start = len(table["feature"])
    for node in nodes:  # in the order the rows were numbered above
        if node["is_leaf"]:
            continue
        left, right = int(node["left"]), int(node["right"])
        true = (leaf[left], True) if left in leaf else (interior[left], False)
        false = (leaf[right], True) if right in leaf else (interior[right], False)
        if node["is_categorical"]:
            members.extend(float(c) for c in _bitset_members(bitsets[int(node["bitset_idx"])]))
            members.append(float("nan"))  # each set ends with NaN
            _append(table, int(node["feature_idx"]), MEMBER, 0.0, true, false, bool(node["missing_go_to_left"]))
        else:
            _append(table, int(node["feature_idx"]), LEQ, float(node["num_threshold"]), true, false, bool(node["missing_go_to_left"]))
    return start


def _append(
    table: dict[str, list], feature: int, mode: int, split: float, true: tuple[int, bool], false: tuple[int, bool], missing_true: bool
) -> None:
    table["feature"].append(feature)
    table["mode"].append(mode)
    table["split"].append(split)
    table["true"].append(true[0])
    table["true_leaf"].append(int(true[1]))
    table["false"].append(false[0])
    table["false_leaf"].append(int(false[1]))
    table["missing_true"].append(int(missing_true))


def _bitset_members(words: Any) -> list[int]:
    """The categories set in a 256-bit bitset held as 8 uint32 words (scikit-learn's ``_bitset``)."""
    return [32 * w + b for w, word in enumerate(words) for b in range(32) if (int(word) >> b) & 1]


def _outputs(model: Any, signature: Any, nodes: list[Any]) -> tuple[list[Any], list[Any]]:
    """Probabilities and label for a classifier, the prediction for a regressor, named as the signature says."""
    import numpy as np
    from onnx import TensorProto, helper

    from packager.errors import UnsupportedConversion

    names = signature.output_names
    if hasattr(model, "classes_"):
        if model.n_trees_per_iteration_ == 1:  # binary: sigmoid of the one score, [1 - p, p]
            one = helper.make_tensor("one", TensorProto.DOUBLE, [1, 1], [1.0])
            nodes += [
                helper.make_node("Sigmoid", ["score"], ["p1"]),
                helper.make_node("Sub", ["one", "p1"], ["p0"]),
                helper.make_node("Concat", ["p0", "p1"], [names[1]], axis=1),
            ]
            initializers = [one]
        else:
            nodes.append(helper.make_node("Softmax", ["score"], [names[1]], axis=1))
            initializers = []
        classes = np.asarray(model.classes_)
        if classes.dtype.kind in "OUS":
            text: list[Any] = [str(c).encode() for c in classes]
            table = helper.make_tensor("classes", TensorProto.STRING, [len(classes)], text)
            label_type = TensorProto.STRING
        elif classes.dtype.kind in "iub":
            table = helper.make_tensor("classes", TensorProto.INT64, [len(classes)], [int(c) for c in classes])
            label_type = TensorProto.INT64
        else:
            raise UnsupportedConversion(f"class labels of dtype {classes.dtype} have no ONNX label output here", "use --to skops or joblib")
        nodes += [
            helper.make_node("ArgMax", [names[1]], ["best"], axis=1, keepdims=0),
            helper.make_node("Gather", ["classes", "best"], [names[0]], axis=0),
        ]
        outputs = [
            helper.make_tensor_value_info(names[0], label_type, [None]),
            helper.make_tensor_value_info(names[1], TensorProto.DOUBLE, [None, len(classes)]),
        ]
        return outputs, [*initializers, table]
    link = type(model._loss.link).__name__
    if link == "IdentityLink":
        nodes.append(helper.make_node("Identity", ["score"], [names[0]]))
    elif link == "LogLink":
        nodes.append(helper.make_node("Exp", ["score"], [names[0]]))
    else:
        raise UnsupportedConversion(f"HistGradientBoostingRegressor with a {link} has no ONNX graph here", "use --to skops or joblib")
    return [helper.make_tensor_value_info(names[0], TensorProto.DOUBLE, [None, 1])], []
