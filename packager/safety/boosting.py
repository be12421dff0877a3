"""LightGBM and XGBoost model files are parsed by C++ readers that trust their sizes and indices: checked here first.

Measured (lightgbm 4.7): the text reader splits the file into trees by the header's ``tree_sizes=`` and reads each
at ``start + sum(sizes before it)`` without comparing with the file's length, so ``tree_sizes=999999999999``
crashes ``lib_lightgbm.so`` (general protection fault; issue 21, finding 5); a malformed number aborts the process
("Fatal Python error: Aborted"). Its predictor walks ``left_child``/``right_child`` and reads ``split_feature``,
and a categorical split indexes ``cat_boundaries`` by its threshold, all unchecked. XGBoost's JSON/UBJSON reader
takes ``left_children``/``right_children``/``split_indices`` as they are and its predictor follows them.

So the structure is checked in Python: every array of every tree has the length its counts give, every index is
inside what it indexes, children are numbered after their parents (what both libraries write, so no walk loops), and
``tree_sizes`` equals each tree block's real byte length. A malformed number is an InputFileError (one line); a
structure that would make the library read outside its arrays is an UnsafeModelError naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from packager.errors import InputFileError, UnsafeModelError, first_line

HINT = "the model's tree structure is inconsistent, so the file is crafted or corrupt; re-save it from the training code"
LIGHTGBM_HINT = "re-save the model with booster.save_model; the file was edited or corrupted"
_LGB_ARRAYS = {"split_feature": int, "threshold": float, "decision_type": int, "left_child": int, "right_child": int}
_CATEGORICAL = 1  # LightGBM's kCategoricalMask bit of decision_type


def _unsafe(label: str, what: str) -> UnsafeModelError:
    return UnsafeModelError(f"{label}: {what}", HINT)


# ------------------------------------------------------------------ LightGBM text


def check_lightgbm_text(raw: bytes, label: str) -> None:
    """A whole LightGBM text model (file or the string a pickled Booster holds), before LightGBM parses it."""
    if not raw.replace(b"\r\n", b"\n").startswith(b"tree\nversion=v"):
        raise InputFileError(
            f"{label} is not a LightGBM text model (no 'tree / version=' header)", "give the file written by booster.save_model"
        )
    if b"end of trees" not in raw:
        raise InputFileError(f"{label} is a truncated LightGBM model (no 'end of trees' line)", "re-save the model; the file was cut short")
    control = re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", raw)
    if control:
        # LightGBM reads the model as a C string: a NUL cuts it short, and one inside a number hung its parser (fuzz)
        raise InputFileError(f"{label} holds a control byte {control.group(0)!r} at byte {control.start()}", LIGHTGBM_HINT)
    body, trailer = raw.split(b"end of trees", 1)
    try:
        _check_parameters(trailer.decode("utf-8"), label)
        text = body.decode("utf-8")
        header = _lightgbm_header(text, label)
        features = int(header["max_feature_idx"]) + 1
        blocks = text.split("\nTree=")[1:]
        for block in blocks:
            _check_lightgbm_tree(block, features, label)
        _check_tree_sizes(body, header, label)
        _check_lightgbm_counts(header, len(blocks), label)
    except UnsafeModelError:
        raise
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{label} is a malformed LightGBM model ({first_line(exc, 160)})", LIGHTGBM_HINT) from None


_PARAMETER = re.compile(r"\[[A-Za-z0-9_]+: [^\n]*\]")


def _check_parameters(trailer: str, label: str) -> None:
    """The ``parameters:`` block after the trees: LightGBM's GetLoadedParam reads it line by line up to ``end of
    parameters`` (measured, lightgbm 4.7: a block cut inside a line, "[precise", segfaults in ``_get_loaded_param``)."""
    if "\nparameters:" not in trailer:
        return
    block = trailer.split("\nparameters:", 1)[1]
    if "\nend of parameters" not in block:
        raise _unsafe(label, "the parameters: block has no 'end of parameters' line (the file was cut short)")
    for line in block.split("\nend of parameters", 1)[0].strip("\r\n").splitlines():
        if not _PARAMETER.fullmatch(line.strip("\r")):
            raise _unsafe(label, f"parameters: line {line[:60]!r} is not '[name: value]'")


def _lightgbm_header(text: str, label: str) -> dict[str, str]:
    head = text.split("\nTree=", 1)[0]
    header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    if int(header["max_feature_idx"]) < 0:
        raise _unsafe(label, f"max_feature_idx={header['max_feature_idx']}")
    return header


def _check_tree_sizes(body: bytes, header: dict[str, str], label: str) -> None:
    """LightGBM reads tree i at ``first tree + sum(tree_sizes[:i])``: each size must be that tree block's byte length."""
    if "tree_sizes" not in header:
        return  # without it LightGBM parses tree by tree, as we do
    sizes = [int(v) for v in header["tree_sizes"].split()]
    starts = [m.start() + 1 for m in re.finditer(rb"\nTree=", body)]
    actual = [end - start for start, end in zip(starts, starts[1:] + [len(body)], strict=True)]
    if len(sizes) != len(actual):
        raise _unsafe(label, f"tree_sizes lists {len(sizes)} trees but the file holds {len(actual)}")
    for index, (size, real) in enumerate(zip(sizes, actual, strict=True)):
        if size != real:
            raise _unsafe(label, f"tree_sizes gives tree {index} {size} bytes but it has {real}: LightGBM would read outside the file")


def _ints(fields: dict[str, str], key: str) -> list[int]:
    return [int(v) for v in fields.get(key, "").split()]


# Optional per-node arrays LightGBM reads with a fixed length when present (StringToArray: a wrong length is a Fatal).
_LGB_SPLIT_ARRAYS = ("split_gain", "internal_value", "internal_weight", "internal_count")
_LGB_LEAF_ARRAYS = ("leaf_weight", "leaf_count")


def _check_lightgbm_tree(block: str, features: int, label: str) -> None:
    """One tree. LightGBM parses the trees in an OpenMP loop when tree_sizes is given, where its Fatal (a missing field,
    an array of the wrong length) cannot be caught: "terminate called without an active exception", SIGABRT (measured,
    lightgbm 4.7, a tree without num_cat). So every field it requires is required here, every length it checks too."""
    lines = block.splitlines()
    tree = f"tree {lines[0]}"
    fields = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    missing = [key for key in ("num_leaves", "num_cat", "leaf_value") if key not in fields]
    if missing:
        raise _unsafe(label, f"{tree} has no {', '.join(missing)} field (LightGBM would abort)")
    leaves = int(fields["num_leaves"])
    if leaves < 1:
        raise _unsafe(label, f"{tree}: num_leaves={leaves}")
    leaf_values = [float(v) for v in fields["leaf_value"].split()]
    if len(leaf_values) != leaves:
        raise _unsafe(label, f"{tree}: leaf_value has {len(leaf_values)} values for num_leaves={leaves}")
    float(fields.get("shrinkage", "1"))
    if int(fields.get("is_linear", "0")):
        _check_linear(fields, leaves, features, f"{label}: {tree}")
    for keys, length in ((_LGB_SPLIT_ARRAYS, leaves - 1), (_LGB_LEAF_ARRAYS, leaves)):
        for key in keys:
            if key in fields and len([float(v) for v in fields[key].split()]) != length:
                raise _unsafe(label, f"{tree}: {key} does not have {length} values")
    if leaves == 1:
        _check_categorical(fields, {"decision_type": [], "threshold": []}, f"{label}: {tree}")
        return
    arrays: dict[str, list[Any]] = {}
    for key, kind in _LGB_ARRAYS.items():
        if key not in fields and key != "decision_type":
            raise _unsafe(label, f"{tree} has no {key} field (LightGBM would abort)")
        arrays[key] = [kind(v) for v in fields.get(key, " ".join(["0"] * (leaves - 1))).split()]
        if len(arrays[key]) != leaves - 1:
            raise _unsafe(label, f"{tree}: {key} has {len(arrays[key])} values for {leaves - 1} splits")
    for node, feature in enumerate(arrays["split_feature"]):
        if not 0 <= feature < features:
            raise _unsafe(label, f"{tree}: node {node} split_feature={feature} outside 0..{features - 1}")
    for key in ("left_child", "right_child"):
        for node, child in enumerate(arrays[key]):
            # >= 0: an inner node, numbered after its parent; < 0: leaf ~child
            if not (node < child < leaves - 1 or -leaves <= child < 0):
                raise _unsafe(label, f"{tree}: node {node} {key}={child} outside the tree's {leaves - 1} nodes and {leaves} leaves")
    _check_categorical(fields, arrays, f"{label}: {tree}")


def _check_categorical(fields: dict[str, str], arrays: dict[str, list[Any]], where: str) -> None:
    """A categorical split's threshold is an index into ``cat_boundaries``, which cuts ``cat_threshold`` into bitsets."""
    num_cat = int(fields.get("num_cat", "0"))
    boundaries, bits = _ints(fields, "cat_boundaries"), _ints(fields, "cat_threshold")
    if num_cat < 0 or (num_cat > 0 and len(boundaries) != num_cat + 1):
        raise UnsafeModelError(f"{where}: num_cat={num_cat} with {len(boundaries)} cat_boundaries", HINT)
    if num_cat > 0 and (
        boundaries[0] != 0 or boundaries[-1] != len(bits) or any(b > a for a, b in zip(boundaries[1:], boundaries, strict=False))
    ):
        raise UnsafeModelError(f"{where}: cat_boundaries {boundaries[:8]} do not cut the {len(bits)} cat_threshold words", HINT)
    for node, (kind, threshold) in enumerate(zip(arrays["decision_type"], arrays["threshold"], strict=True)):
        if kind & _CATEGORICAL and not (float(threshold).is_integer() and 0 <= threshold < num_cat):
            raise UnsafeModelError(f"{where}: categorical node {node} threshold={threshold} outside num_cat={num_cat}", HINT)


def _check_linear(fields: dict[str, str], leaves: int, features: int, where: str) -> None:
    counts = _ints(fields, "num_features")
    used = _ints(fields, "leaf_features")
    coefficients = [float(v) for v in fields.get("leaf_coeff", "").split()]
    [float(v) for v in fields.get("leaf_const", "").split()]
    if len(counts) != leaves or any(c < 0 for c in counts) or sum(counts) != len(used) or len(coefficients) != len(used):
        raise UnsafeModelError(f"{where}: linear tree num_features/leaf_features/leaf_coeff do not match num_leaves={leaves}", HINT)
    if any(not 0 <= f < features for f in used) or len(fields.get("leaf_const", "").split()) != leaves:
        raise UnsafeModelError(f"{where}: linear tree leaf_features outside 0..{features - 1} or leaf_const not one per leaf", HINT)


def _check_lightgbm_counts(header: dict[str, str], trees: int, label: str) -> None:
    """Predict writes one output per tree of an iteration into a buffer of ``num_class`` values."""
    classes, per_iteration = int(header.get("num_class", "1")), int(header.get("num_tree_per_iteration", "1"))
    if not 1 <= per_iteration == classes:
        # LightGBM writes one tree per class per iteration (num_class=1 outside multiclass); a larger num_class only
        # sizes its buffers (measured: num_class=50,000,000 on a binary model hangs the loader)
        raise _unsafe(label, f"num_tree_per_iteration={per_iteration} with num_class={classes}")
    if trees % per_iteration:
        raise _unsafe(label, f"{trees} trees is not a whole number of iterations of num_tree_per_iteration={per_iteration}")


# ------------------------------------------------------------------ XGBoost JSON / UBJSON

_UBJ_NUMBERS = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}
_UBJ_DEPTH = 64  # XGBoost nests 6 deep; a deeper document is not one of its models


class _Ubj:
    """A bounds-checked UBJSON reader for what XGBoost writes (typed arrays become numpy arrays, read in place)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"UBJSON value at byte {self.pos} runs past the end of the file")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, marker: bytes) -> Any:
        import numpy

        kind = numpy.dtype(_UBJ_NUMBERS[marker])
        return numpy.frombuffer(self.take(kind.itemsize), kind)[0].item()

    def count(self) -> int:
        marker = self.take(1)
        if marker not in b"iUIlL":
            raise ValueError(f"UBJSON length at byte {self.pos} has type {marker!r}")
        return int(self.number(marker))

    def value(self, marker: bytes, depth: int) -> Any:
        if depth > _UBJ_DEPTH:
            raise ValueError(f"UBJSON nested deeper than {_UBJ_DEPTH}")
        if marker in _UBJ_NUMBERS:
            return self.number(marker)
        if marker in (b"S", b"H"):
            return self.take(self.count()).decode("utf-8")
        if marker == b"C":
            return self.take(1).decode("latin-1")
        if marker in (b"T", b"F", b"Z"):
            return {b"T": True, b"F": False, b"Z": None}[marker]
        if marker == b"[":
            return self.array(depth)
        if marker == b"{":
            return self.object(depth)
        raise ValueError(f"UBJSON marker {marker!r} at byte {self.pos - 1}")

    def header(self) -> tuple[bytes | None, int | None]:
        kind = count = None
        if self.data[self.pos : self.pos + 1] == b"$":
            self.pos += 1
            kind = self.take(1)
        if self.data[self.pos : self.pos + 1] == b"#":
            self.pos += 1
            count = self.count()
        if kind is not None and count is None:
            raise ValueError("UBJSON typed container without a count")
        return kind, count

    def array(self, depth: int) -> Any:
        import numpy

        kind, count = self.header()
        if kind in _UBJ_NUMBERS and count is not None:
            dtype = numpy.dtype(_UBJ_NUMBERS[kind])
            return numpy.frombuffer(self.take(count * dtype.itemsize), dtype)
        items: list[Any] = []
        while count is None or len(items) < count:
            marker = kind or self.take(1)
            if count is None and marker == b"]":
                break
            items.append(self.value(marker, depth + 1))
        return items

    def object(self, depth: int) -> dict[str, Any]:
        kind, count = self.header()
        result: dict[str, Any] = {}
        while count is None or len(result) < count:
            if count is None and self.data[self.pos : self.pos + 1] == b"}":
                self.pos += 1
                break
            key = self.take(self.count()).decode("utf-8")
            result[key] = self.value(kind or self.take(1), depth + 1)
        return result


def read_ubjson(data: bytes) -> Any:
    reader = _Ubj(data)
    return reader.value(reader.take(1), 0)


def check_xgboost_document(document: Any, label: str) -> None:
    """An XGBoost model as JSON/UBJSON decodes it ({"learner": ...}, or a pickled Booster's {"Config", "Model"})."""
    if isinstance(document, dict) and "Model" in document:
        document = document["Model"]
    learner = document.get("learner") if isinstance(document, dict) else None
    if not isinstance(learner, dict):
        raise InputFileError(f"{label} is not an XGBoost model (no learner)", "give the file written by XGBoost's save_model")
    try:
        _check_learner(learner, label)
    except UnsafeModelError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InputFileError(f"{label} is a malformed XGBoost model ({type(exc).__name__}: {first_line(exc, 160)})", HINT) from None


def _int_field(mapping: Any, key: str) -> int:
    return int(float(mapping[key])) if isinstance(mapping[key], str) else int(mapping[key])


def _check_learner(learner: dict[str, Any], label: str) -> None:
    params = learner["learner_model_param"]
    features = _int_field(params, "num_feature")
    outputs = max(1, _int_field(params, "num_class"), _int_field(params, "num_target") if "num_target" in params else 1)
    if features < 0:
        raise _unsafe(label, f"num_feature={features}")
    booster = learner["gradient_booster"]
    name = booster["name"]
    if name == "gblinear":
        weights = booster["model"]["weights"]
        if len(weights) != (features + 1) * outputs:
            raise _unsafe(label, f"gblinear has {len(weights)} weights, not (num_feature + 1) x {outputs}")
        return
    model = booster["gbtree"]["model"] if name == "dart" else booster["model"]
    if name not in ("gbtree", "dart"):
        raise InputFileError(f"{label}: gradient_booster {name!r} is not one XGBoost writes", HINT)
    trees, info = model["trees"], list(model["tree_info"])
    count = _int_field(model["gbtree_model_param"], "num_trees")
    if not (len(trees) == count == len(info)):
        raise _unsafe(label, f"num_trees={count} but {len(trees)} trees and {len(info)} tree_info entries")
    if outputs > max(1, count):
        # every output has trees of its own; a count beyond them only sizes buffers (num_class=50,000,000 hung the loader)
        raise _unsafe(label, f"num_class/num_target={outputs} for a model of {count} trees")
    if "cats" in model:
        _check_categories_encoder(model["cats"], features, label)
    for index, group in enumerate(info):
        if not 0 <= int(group) < outputs:
            raise _unsafe(label, f"tree_info[{index}]={int(group)} outside the {outputs} outputs")
    indptr = [int(v) for v in model.get("iteration_indptr", [0, count])]
    if indptr[0] != 0 or indptr[-1] != count or any(b < a for a, b in zip(indptr, indptr[1:], strict=False)):
        raise _unsafe(label, f"iteration_indptr {indptr[:8]} does not cut the {count} trees into iterations")
    if name == "dart" and len(booster.get("weight_drop", [])) != count:
        raise _unsafe(label, f"dart weight_drop has {len(booster.get('weight_drop', []))} weights for {count} trees")
    for index, tree in enumerate(trees):
        if "id" in tree and int(tree["id"]) != index:
            # XGBoost indexes its trees by id: a repeated id segfaulted its predict (fuzz boosting 7921)
            raise _unsafe(label, f"tree {index} has id={int(tree['id'])}")
        _check_xgboost_tree(tree, features, f"{label}: tree {index}")


def _check_categories_encoder(cats: Any, features: int, label: str) -> None:
    """XGBoost 3's stored category encoder: ``feature_segments`` cut ``sorted_idx`` per feature, ``enc`` one per feature."""
    if not isinstance(cats, dict) or not cats:
        return
    segments = [int(v) for v in cats.get("feature_segments", [])]
    order = [int(v) for v in cats.get("sorted_idx", [])]
    encoders = list(cats.get("enc", []))
    if segments and (len(segments) != features + 1 or segments[0] != 0 or segments[-1] != len(order)):
        raise _unsafe(label, f"cats feature_segments {segments[:8]} do not cut sorted_idx ({len(order)}) for {features} features")
    if any(b < a for a, b in zip(segments, segments[1:], strict=False)) or sorted(order) != list(range(len(order))):
        raise _unsafe(label, "cats feature_segments decrease or sorted_idx is not a permutation")
    if len(encoders) and len(encoders) != features:
        raise _unsafe(label, f"cats enc has {len(encoders)} entries for {features} features")
    for index, encoder in enumerate(encoders):
        offsets = [int(v) for v in encoder.get("offsets", [])] if isinstance(encoder, dict) else None
        if offsets is None:
            raise _unsafe(label, f"cats enc[{index}] is not an object")
        values = encoder.get("values", [])
        width = segments[index + 1] - segments[index] if segments else None
        if offsets and (offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:], strict=False)) or offsets[-1] > len(values)):
            raise _unsafe(label, f"cats enc[{index}] offsets do not cut its {len(values)} values")
        count = len(offsets) - 1 if offsets else len(values)
        if width is not None and (offsets or len(values)) and count != width:
            raise _unsafe(label, f"cats enc[{index}] holds {count} categories but feature_segments give {width}")


_XGB_NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions", "default_left")
_XGB_ROOT_PARENT = 2147483647  # kInvalidNodeId's parent marker written for the root


def _check_xgboost_tree(tree: dict[str, Any], features: int, where: str) -> None:
    import numpy

    param = tree["tree_param"]
    nodes, leaf_size = _int_field(param, "num_nodes"), _int_field(param, "size_leaf_vector")
    if leaf_size not in (0, 1):
        # > 1 makes XGBoost read the tree as a multi-target tree of another layout (measured, xgboost 3.2: size_leaf_vector
        # 2, -2 or 2**31-1 on a single-target tree segfaults its JSON loader); packager does not check that layout
        raise UnsafeModelError(
            f"{where}: size_leaf_vector={leaf_size}: only single-target trees (0 or 1) are checked",
            "if the file is a multi-target model you trust, rerun with --trust",
        )
    if nodes < 1 or _int_field(param, "num_feature") != features:
        raise UnsafeModelError(f"{where}: num_nodes={nodes}, num_feature={param['num_feature']} (model: {features})", HINT)
    arrays = {key: numpy.asarray(tree[key]).astype(numpy.float64) for key in _XGB_NODE_ARRAYS}
    for key in ("split_type", "loss_changes", "sum_hessian"):
        if key in tree:
            arrays[key] = numpy.asarray(tree[key]).astype(numpy.float64)
    for key, values in arrays.items():
        if values.shape != (nodes,):
            raise UnsafeModelError(f"{where}: {key} has {values.size} values for num_nodes={nodes}", HINT)
    if "base_weights" in tree and len(tree["base_weights"]) != nodes:
        raise UnsafeModelError(f"{where}: base_weights has {len(tree['base_weights'])} values for num_nodes={nodes}", HINT)
    index = numpy.arange(nodes)
    left, right, parents = arrays["left_children"], arrays["right_children"], arrays["parents"]
    leaf = left == -1
    _first_xgb_bad(where, "right_children", right, leaf & (right != -1), "a leaf (left -1) must have right -1")
    for key, child in (("left_children", left), ("right_children", right)):
        _first_xgb_bad(where, key, child, ~leaf & ((child <= index) | (child >= nodes)), f"outside (node, {nodes})")
    split = arrays["split_indices"]
    _first_xgb_bad(where, "split_indices", split, ~leaf & ((split < 0) | (split >= features)), f"outside 0..{features - 1}")
    inner = numpy.flatnonzero(~leaf)
    kids = numpy.concatenate([left[inner], right[inner]]).astype(numpy.int64)
    if parents[0] != _XGB_ROOT_PARENT or not (parents[kids] == numpy.concatenate([inner, inner])).all():
        raise UnsafeModelError(f"{where}: parents do not match left_children/right_children", HINT)
    _check_xgboost_categories(tree, arrays.get("split_type"), nodes, where)


def _first_xgb_bad(where: str, field: str, values: Any, bad: Any, why: str) -> None:
    import numpy

    found = numpy.flatnonzero(bad)
    if len(found):
        value = float(values[found[0]])
        shown = str(int(value)) if value.is_integer() else repr(value)
        raise UnsafeModelError(f"{where}: node {int(found[0])} has {field}={shown}: {why}", HINT)


def _check_xgboost_categories(tree: dict[str, Any], split_type: Any, nodes: int, where: str) -> None:
    import numpy

    cat_nodes = numpy.asarray(tree.get("categories_nodes", [])).astype(numpy.int64)
    segments = numpy.asarray(tree.get("categories_segments", [])).astype(numpy.int64)
    sizes = numpy.asarray(tree.get("categories_sizes", [])).astype(numpy.int64)
    total = len(tree.get("categories", []))
    if not (cat_nodes.shape == segments.shape == sizes.shape):
        raise UnsafeModelError(f"{where}: categories_nodes/segments/sizes differ in length", HINT)
    if ((cat_nodes < 0) | (cat_nodes >= nodes)).any() or ((segments < 0) | (sizes < 0) | (segments + sizes > total)).any():
        raise UnsafeModelError(f"{where}: a categorical split points outside the tree's {total} categories", HINT)
    if split_type is not None:
        categorical = set(numpy.flatnonzero(split_type != 0).tolist())
        if ((split_type != 0) & (split_type != 1)).any() or not categorical <= set(cat_nodes.tolist()):
            raise UnsafeModelError(f"{where}: split_type marks nodes categorical that have no categories", HINT)


# ------------------------------------------------------------------ pickled boosters


def check_booster_state(obj: Any, state: Any, label: str) -> None:
    """A pickled ``lightgbm.basic.Booster`` (``handle``: its text model) or ``xgboost.core.Booster`` (``handle``: a
    UBJSON snapshot): ``__setstate__`` hands them to the C++ readers, so they are checked as the files are."""
    kind = (type(obj).__module__, type(obj).__name__)
    if kind not in (("lightgbm.basic", "Booster"), ("xgboost.core", "Booster")) or not isinstance(state, dict):
        return
    model = state.get("_handle", state.get("handle")) if kind[0] == "lightgbm.basic" else state.get("handle")
    if model is None:
        return
    if kind[0] == "lightgbm.basic":
        if not isinstance(model, str):
            raise _unsafe(label, f"pickled LightGBM Booster holds a {type(model).__name__} where its model text belongs")
        check_lightgbm_text(model.encode("utf-8"), f"{label} (LightGBM model inside)")
        return
    if not isinstance(model, bytearray):
        raise _unsafe(label, f"pickled XGBoost Booster holds a {type(model).__name__} where its model snapshot belongs")
    try:
        document = read_ubjson(bytes(model))
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{label}: the XGBoost model inside is not valid UBJSON ({first_line(exc, 120)})", HINT) from None
    check_xgboost_document(document, f"{label} (XGBoost model inside)")
