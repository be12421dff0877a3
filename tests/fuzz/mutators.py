"""Structure-aware mutations: each takes the bytes (or folder) of a benign seed and a ``random.Random``
and returns a damaged variant that still parses as far as possible, so the damage reaches the
framework's own reader instead of stopping at a CRC, a decompressor or a protobuf parse error.

Every function is deterministic in its ``rng``: input ``i`` of a run is rebuilt from (seed, i) alone,
which is how a crash is re-run in a fresh process. Names put into pickles come only from the seed
itself or from a short harmless list: making attacks is the attack corpus' job, not the fuzzer's.
"""
from __future__ import annotations

import gzip
import io
import json
import lzma
import pickletools
import random
import re
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

EXTREME_INTS = (0, -1, 1, 2, 7, 255, 256, 65535, 2**31 - 1, -(2**31), 2**32, 2**62, -(2**62))
EXTREME_FLOATS = (0.0, -0.0, 1e-45, 1e38, -1e38, float("nan"), float("inf"), float("-inf"))
HARMLESS_GLOBALS = (("collections", "OrderedDict"), ("builtins", "len"), ("decimal", "Decimal"), ("nosuchmodule", "Thing"),
                    ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"), ("sklearn.linear_model", "Ridge"))


# ------------------------------------------------------------------ bytes

def mutate_bytes(data: bytes, rng: random.Random, edits: int | None = None) -> bytes:
    """Flip, truncate, insert, delete or overwrite at random positions (the seed harness' edits)."""
    data = bytearray(data)
    for _ in range(edits or rng.randint(1, 4)):
        pos = rng.randrange(len(data)) if data else 0
        kind = rng.choice(("flip", "flip", "truncate", "insert", "delete", "overwrite", "int"))
        if kind == "flip" and data:
            data[pos] ^= rng.randint(1, 255)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            del data[pos:pos + rng.randint(1, 64)]
        elif kind == "overwrite":
            data[pos:pos + 8] = rng.randbytes(rng.randint(1, 8))
        elif kind == "int":  # a length or count field set to an extreme value
            data[pos:pos + 4] = struct.pack("<i", rng.choice(EXTREME_INTS[:9] + (-(2**31),)))
    return bytes(data)


# ------------------------------------------------------------------ pickle opcodes

def _ops(data: bytes) -> list[tuple[Any, Any, int]]:
    found = []
    try:
        for op, arg, pos in pickletools.genops(data):
            found.append((op, arg, pos))
            if op.name == "STOP":
                break
    except Exception:  # joblib arrays are raw bytes after a BUILD: keep the opcodes before them
        pass
    return found


def _encode_str(op_name: str, text: str) -> bytes | None:
    raw = text.encode()
    if op_name == "SHORT_BINUNICODE" and len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    if op_name in ("BINUNICODE", "SHORT_BINUNICODE"):
        return b"X" + struct.pack("<I", len(raw)) + raw
    return None


def mutate_pickle(data: bytes, rng: random.Random) -> bytes:
    """Delete, duplicate, swap or retype whole opcodes; change an int or string argument; re-point a global."""
    ops = _ops(data)
    if len(ops) < 3:
        return mutate_bytes(data, rng)
    bounds = [pos for _, _, pos in ops] + [len(data) if ops[-1][0].name != "STOP" else ops[-1][2] + 1]
    i = rng.randrange(len(ops) - 1)
    start, end = bounds[i], bounds[i + 1]
    op, arg, _ = ops[i]
    strings = [a for o, a, _ in ops if isinstance(a, str)]
    kind = rng.choice(("delete", "duplicate", "swap", "retype", "int", "string", "global", "splice", "bytes"))
    if kind == "delete":
        return data[:start] + data[end:]
    if kind == "duplicate":
        return data[:end] + data[start:end] + data[end:]
    if kind == "swap" and i + 2 < len(bounds):
        after = bounds[i + 2]
        return data[:start] + data[end:after] + data[start:end] + data[after:]
    if kind == "retype":  # same argument bytes, another opcode
        return data[:start] + rng.choice(pickletools.opcodes).code.encode("latin-1") + data[start + 1:]
    if kind == "int":
        ints = [j for j, (o, a, _) in enumerate(ops) if isinstance(a, int) and not isinstance(a, bool)]
        if ints:
            j = rng.choice(ints)
            value = rng.choice(EXTREME_INTS)
            encoded = b"J" + struct.pack("<i", value) if -(2**31) <= value < 2**31 else b"\x8a\x08" + struct.pack("<q", value)
            return data[:bounds[j]] + encoded + data[bounds[j + 1]:]
    if kind == "string" and strings:
        texts = [j for j, (o, a, _) in enumerate(ops) if isinstance(a, str) and _encode_str(o.name, "x")]
        if texts:
            j = rng.choice(texts)
            new = rng.choice(strings + ["", "x" * 300, "__reduce__", "dtype", "shape"])
            return data[:bounds[j]] + _encode_str(ops[j][0].name, new) + data[bounds[j + 1]:]
    if kind == "global":
        globals_ = [j for j, (o, a, _) in enumerate(ops) if o.name in ("GLOBAL", "INST")]
        module, name = rng.choice(HARMLESS_GLOBALS + tuple(tuple(a.split(" ", 1)) for o, a, _ in ops if o.name == "GLOBAL"))
        if globals_:
            j = rng.choice(globals_)
            return data[:bounds[j]] + f"c{module}\n{name}\n".encode() + data[bounds[j + 1]:]
        stacked = [j for j, (o, a, _) in enumerate(ops) if o.name == "STACK_GLOBAL"]
        if stacked and stacked[0] >= 2:  # protocol 4: the two strings before STACK_GLOBAL (memoized or not)
            j = rng.choice(stacked)
            text = [k for k in range(j - 1, max(j - 5, -1), -1) if isinstance(ops[k][1], str) and _encode_str(ops[k][0].name, "x")]
            if text:
                k = text[0]
                return data[:bounds[k]] + _encode_str(ops[k][0].name, rng.choice((name, module))) + data[bounds[k + 1]:]
    if kind == "splice":  # an opcode run from elsewhere in the same pickle
        j = rng.randrange(len(ops) - 1)
        length = rng.randint(1, 6)
        return data[:start] + data[bounds[j]:bounds[min(j + length, len(ops) - 1)]] + data[start:]
    return data[:start] + mutate_bytes(data[start:end], rng, 1) + data[end:]


# ------------------------------------------------------------------ joblib (compressed or not)

_COMPRESSORS = {
    "joblib-zlib": (zlib.decompress, lambda raw: zlib.compress(raw, 3)),
    "joblib-gzip": (gzip.decompress, lambda raw: gzip.compress(raw, 3, mtime=0)),
    "joblib-lzma": (lzma.decompress, lambda raw: lzma.compress(raw, format=lzma.FORMAT_ALONE)),
}


def mutate_joblib(data: bytes, kind: str, rng: random.Random) -> bytes:
    """Mutate the pickle inside the compression (and recompress), or the compressed stream itself."""
    unpack, pack = _COMPRESSORS.get(kind, (None, None))
    if unpack is None or rng.random() < 0.2:
        return mutate_pickle(data, rng) if rng.random() < 0.7 else mutate_bytes(data, rng)
    raw = unpack(data)
    return pack(mutate_pickle(raw, rng) if rng.random() < 0.7 else mutate_bytes(raw, rng))


# ------------------------------------------------------------------ JSON and text

def _json_sites(node: Any, out: list) -> list:
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _json_sites(node[key], out)
    elif isinstance(node, list):
        for index in range(len(node)):
            out.append((node, index))
            _json_sites(node[index], out)
    return out


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """Change a value's type or size, delete or duplicate a key, move a subtree, swap strings found elsewhere."""
    try:
        tree = json.loads(data)
    except ValueError:
        return mutate_bytes(data, rng)
    for _ in range(rng.randint(1, 3)):
        sites = _json_sites(tree, [])
        if not sites:
            break
        parent, key = rng.choice(sites)
        value = parent[key]
        strings = [p[k] for p, k in sites if isinstance(p[k], str)]
        kind = rng.choice(("value", "value", "delete", "duplicate", "string", "subtree", "number"))
        if kind == "delete":
            del parent[key]
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(value)))
        elif kind == "string" and strings:
            parent[key] = rng.choice(strings)
        elif kind == "subtree":
            other_parent, other_key = rng.choice(sites)
            parent[key] = json.loads(json.dumps(other_parent[other_key]))
        elif kind == "number" or isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = rng.choice(EXTREME_INTS + (0.5, -3.5, 1e308))
        else:
            parent[key] = rng.choice((None, True, "", "x", [], {}, [None], {"class_name": "Dense"}, -1, 2**40, [2**31, -1]))
    return json.dumps(tree, allow_nan=True).encode()


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")


def mutate_text(data: bytes, rng: random.Random) -> bytes:
    """Source code (TorchScript ``code/*.py``): swap identifiers and numbers for ones in the file, drop or repeat lines."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    kind = rng.choice(("token", "token", "number", "drop", "repeat", "swap"))
    if kind in ("drop", "repeat", "swap") and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if kind == "drop":
            del lines[i]
        elif kind == "repeat":
            lines.insert(i, lines[j])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines).encode()
    tokens = list(_TOKEN.finditer(text))
    if not tokens:
        return mutate_bytes(data, rng)
    target = rng.choice(tokens)
    if kind == "number":
        numbers = [t for t in tokens if t.group()[0].isdigit()] or tokens
        target = rng.choice(numbers)
        new = str(rng.choice(EXTREME_INTS))
    else:
        new = rng.choice(tokens).group()
    return (text[:target.start()] + new + text[target.end():]).encode()


# ------------------------------------------------------------------ HDF5 (Keras .h5, model.weights.h5)

def mutate_h5(data: bytes, rng: random.Random) -> bytes:
    """Through h5py: reshape, retype, fill or delete a dataset, or mutate the model_config attribute."""
    import h5py
    import numpy as np

    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    stream = io.BytesIO(data)
    try:
        with h5py.File(stream, "r+") as handle:
            datasets, groups = [], []
            handle.visititems(lambda name, obj: (datasets if isinstance(obj, h5py.Dataset) else groups).append(name))
            kind = rng.choice(("config", "reshape", "retype", "fill", "delete", "attr"))
            if kind == "config" and "model_config" in handle.attrs:
                raw = handle.attrs["model_config"]
                handle.attrs["model_config"] = mutate_json(raw.encode() if isinstance(raw, str) else bytes(raw), rng).decode()
            elif kind == "attr" and (datasets or groups):
                node = handle[rng.choice(datasets + groups)]
                names = list(node.attrs) or ["weight_names"]
                node.attrs[rng.choice(names)] = rng.choice((np.array([b"nope"]), np.int64(-1), "x", np.zeros((0,), "S1")))
            elif datasets:
                name = rng.choice(datasets)
                old = handle[name][()]
                if kind == "delete":
                    del handle[name]
                else:
                    del handle[name]
                    if kind == "reshape":
                        shape = tuple(rng.choice((0, 1, 2, 3, 7, 64)) for _ in range(rng.randint(0, 3)))
                        new = np.zeros(shape, getattr(old, "dtype", np.float32))
                    elif kind == "retype":
                        new = (
                            np.asarray(old).astype(rng.choice(("int8", "float64", "S4", "bool")), copy=False)
                            if np.asarray(old).dtype.kind != "O"
                            else old
                        )
                    else:
                        new = np.full(np.shape(old), rng.choice(EXTREME_FLOATS), np.float32)
                    handle.create_dataset(name, data=new)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        return mutate_bytes(data, rng)
    return stream.getvalue()


# ------------------------------------------------------------------ zip archives: the members, re-zipped

def _member_weight(name: str) -> float:
    if name.endswith((".py", ".pkl", ".json", ".h5")):
        return 4.0
    return 1.0


def mutate_member(name: str, data: bytes, rng: random.Random) -> bytes:
    if name.endswith(".py"):
        return mutate_text(data, rng)
    if name.endswith(".json"):
        return mutate_json(data, rng)
    if name.endswith((".pkl", ".debug_pkl")) or data[:1] == b"\x80":
        return mutate_pickle(data, rng)
    if name.endswith(".h5"):
        return mutate_h5(data, rng)
    if data[:4] == b"PK\x03\x04":  # a nested archive (a .pt2's sample inputs)
        return mutate_zip(data, rng, container=0.0)
    return mutate_bytes(data, rng)


def mutate_zip(data: bytes, rng: random.Random, container: float = 0.25) -> bytes:
    """Mostly a member's content (re-zipped, so past the CRC check); sometimes member names or the container bytes."""
    if rng.random() < container:
        return mutate_bytes(data, rng)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    roll = rng.random()
    if roll < 0.1:  # drop a member
        members.pop(rng.randrange(len(members)))
    elif roll < 0.15:  # rename a member to another one's name (duplicate) or a sibling
        info, payload = members[rng.randrange(len(members))]
        info.filename = rng.choice(members)[0].filename + rng.choice(("", "x", "/"))
    else:
        weights = [_member_weight(info.filename) for info, _ in members]
        for _ in range(rng.choice((1, 1, 1, 2))):
            i = rng.choices(range(len(members)), weights)[0]
            members[i] = (members[i][0], mutate_member(members[i][0].filename, members[i][1], rng))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info, payload in members:
            archive.writestr(info, payload)
    return out.getvalue()


# ------------------------------------------------------------------ protobuf (GraphDef, SavedModel)

def _proto_sites(message: Any, out: list, strings: list) -> None:
    """(message, field, index or None) for every set field, recursively; map values count as messages."""
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out.append((message, field, None))
            value_field = field.message_type.fields_by_name["value"]
            for key in sorted(value):  # upb's map order differs between processes: input i must not
                if value_field.message_type is not None:
                    _proto_sites(value[key], out, strings)
            continue
        if field.is_repeated:
            out.append((message, field, None))
            for index, item in enumerate(value):
                if field.message_type is not None:
                    _proto_sites(item, out, strings)
                else:
                    out.append((message, field, index))
                    if isinstance(item, str):
                        strings.append(item)
        else:
            out.append((message, field, None))
            if field.message_type is not None:
                _proto_sites(value, out, strings)
            elif isinstance(value, str):
                strings.append(value)


def _new_scalar(field: Any, old: Any, rng: random.Random, strings: list) -> Any:
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        candidates = EXTREME_INTS + (old + 1, old - 1, rng.randint(0, 30))
        return rng.choice(candidates)
    if isinstance(old, float):
        return rng.choice(EXTREME_FLOATS + (old * 2,))
    if isinstance(old, str):
        choice = rng.random()
        if choice < 0.6 and strings:
            return rng.choice(strings)
        if choice < 0.8:
            return rng.choice(("", old + ":1", "^" + old, old + "_x", old[: len(old) // 2], "NoSuchOp", "x" * 200))
        return mutate_bytes(old.encode(), rng, 1).decode("utf-8", "replace")
    if isinstance(old, bytes):
        return mutate_bytes(old, rng) if rng.random() < 0.8 else rng.choice((b"", old[: len(old) // 2], old * 2))
    return old


def mutate_message(message: Any, rng: random.Random, edits: int | None = None) -> None:
    """Edit ``message`` in place at random fields: scalars to extreme values, strings to other names in it
    (op names, node names, inputs), repeated fields shrunk or grown, sub-messages cleared."""
    for _ in range(edits or rng.choice((1, 1, 2, 3))):
        sites, strings = [], []
        _proto_sites(message, sites, strings)
        if not sites:
            return
        owner, field, index = rng.choice(sites)
        value = getattr(owner, field.name)
        try:
            if field.is_repeated and index is None:
                if len(value) == 0:
                    continue
                action = rng.choice(
                    ("delete", "duplicate", "clear")
                    if field.message_type is None or field.message_type.GetOptions().map_entry
                    else ("delete", "duplicate", "clear", "splice")
                )
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    keys = sorted(value)
                    if action == "clear":
                        owner.ClearField(field.name)
                    else:
                        del value[rng.choice(keys)]
                elif action == "delete":
                    del value[rng.randrange(len(value))]
                elif action == "clear":
                    owner.ClearField(field.name)
                elif field.message_type is None:
                    value.append(value[rng.randrange(len(value))])
                else:
                    value.add().CopyFrom(value[rng.randrange(len(value))])
            elif index is not None:
                value[index] = _new_scalar(field, value[index], rng, strings)
            elif field.message_type is not None:
                if rng.random() < 0.3:
                    owner.ClearField(field.name)
                else:
                    mutate_message(value, rng, 1)
            else:
                setattr(owner, field.name, _new_scalar(field, value, rng, strings))
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            continue  # out of the field's range: try another site on the next round


def mutate_graphdef(data: bytes, rng: random.Random) -> bytes:
    from tensorflow.core.framework import graph_pb2

    if rng.random() < 0.1:
        return mutate_bytes(data, rng)
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(data)
    _mutate_graph(graph, rng)
    return graph.SerializeToString(deterministic=True)


def _mutate_graph(graph: Any, rng: random.Random) -> None:
    """Graph-level edits beside the field edits: an op renamed to another op in the graph, inputs rewired
    (including into a cycle), a node removed or doubled."""
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    if nodes and rng.random() < 0.5:
        node = rng.choice(nodes)
        kind = rng.choice(("op", "input", "cycle", "dtype", "shape"))
        if kind == "op":
            node.op = rng.choice([n.op for n in nodes] + ["Identity", "Add", "MatMul", "Reshape", "Cast", "StridedSlice", "Const"])
        elif kind == "input" and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(nodes).name + rng.choice(("", ":0", ":1", ":7"))
        elif kind == "cycle":
            node.input.append(node.name)
        elif kind == "dtype":
            for key in ("dtype", "T", "DstT", "SrcT", "out_type"):
                if key in node.attr:
                    node.attr[key].type = rng.choice((0, 2, 3, 7, 9, 10, 14, 20, 21, 23, 101, 999))
        elif kind == "shape":
            for key in ("shape", "_output_shapes", "value"):
                if key in node.attr:
                    shape = node.attr[key].tensor.tensor_shape if key == "value" else node.attr[key].shape
                    if shape.dim:
                        shape.dim[rng.randrange(len(shape.dim))].size = rng.choice((-2, -1, 0, 1, 3, 2**31, 2**40))
    else:
        mutate_message(graph, rng)


def mutate_saved_model(folder: Path, target: Path, rng: random.Random) -> str:
    """Copy a SavedModel folder to ``target`` and damage one of its files: saved_model.pb through the
    protobuf classes (graph, function library, signatures, object graph), or the variables files."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(folder, target)
    choice = rng.random()
    if choice < 0.7:
        saved = saved_model_pb2.SavedModel()
        pb = target / "saved_model.pb"
        saved.ParseFromString(pb.read_bytes())
        meta = saved.meta_graphs[0]
        part = rng.random()
        if part < 0.5:
            _mutate_graph(meta.graph_def, rng)
        elif part < 0.7 and meta.signature_def:
            mutate_message(meta.signature_def[rng.choice(sorted(meta.signature_def))], rng)
        else:
            mutate_message(meta.object_graph_def, rng)
        pb.write_bytes(saved.SerializeToString(deterministic=True))
        return "saved_model.pb"
    if choice < 0.8:
        pb = target / "saved_model.pb"
        pb.write_bytes(mutate_bytes(pb.read_bytes(), rng))
        return "saved_model.pb (bytes)"
    name = rng.choice(sorted(p.name for p in (target / "variables").iterdir()))
    path = target / "variables" / name
    path.write_bytes(mutate_bytes(path.read_bytes(), rng))
    return f"variables/{name}"


# ------------------------------------------------------------------ tree structures (sklearn pickles and .skops)

def _boundary_int(rng: random.Random, size: int) -> int:
    """An index next to where a structure of ``size`` ends, or an extreme one (issue 21: child index 50,000,000)."""
    return rng.choice((-3, -2, -1, 0, 1, size - 1, size, size + 1, 2 * size, 50_000_000, 2**31 - 1, -(2**31), 2**32 + 1, 2**62))


def _mutate_records(nodes: Any, fields: tuple[str, ...], rng: random.Random) -> Any:
    """One or a few fields of a structured node array set to boundary values, or the array cut or repeated."""
    import numpy as np

    nodes = nodes.copy()
    roll = rng.random()
    if roll < 0.1 and len(nodes) > 1:
        return nodes[: rng.randrange(1, len(nodes))].copy()
    if roll < 0.15:
        return np.concatenate([nodes, nodes[: rng.randint(1, len(nodes))]])
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(fields)
        row = rng.randrange(len(nodes))
        kind = nodes.dtype[field]
        value = _boundary_int(rng, len(nodes)) if rng.random() < 0.8 else rng.randrange(-4, 2 * len(nodes) + 2)
        if kind.kind == "f":
            nodes[field][row] = rng.choice(EXTREME_FLOATS + (float(value),))
        else:
            info = np.iinfo(kind)
            nodes[field][row] = min(max(value, int(info.min)), int(info.max))
    return nodes


_TREE_NODE_FIELDS = ("left_child", "right_child", "feature", "missing_go_to_left", "n_node_samples")
_PREDICTOR_NODE_FIELDS = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx", "missing_go_to_left", "count")


def _mutated_tree_reduce(tree: Any, rng: random.Random) -> tuple:
    """``Tree.__reduce__`` with its constructor arguments or state damaged; the real state is read from a sound tree."""
    import numpy as np

    state = dict(tree.__getstate__())
    args = [int(tree.n_features), np.asarray(tree.n_classes, dtype=np.intp).copy(), int(tree.n_outputs)]
    roll = rng.random()
    if roll < 0.55:
        state["nodes"] = _mutate_records(state["nodes"], _TREE_NODE_FIELDS, rng)
    elif roll < 0.7:
        key = rng.choice(("node_count", "max_depth"))
        state[key] = _boundary_int(rng, len(state["nodes"]))
    elif roll < 0.8:
        values = state["values"]
        state["values"] = rng.choice((values[:-1].copy(), values.reshape(values.shape[0], -1).copy(), np.concatenate([values, values])))
    else:
        slot = rng.randrange(3)
        if slot == 1:
            args[1] = rng.choice((args[1][:0], np.concatenate([args[1], args[1]]), args[1] + rng.choice((-args[1][0], 1, 2**20))))
        else:
            args[slot] = _boundary_int(rng, args[slot])
    return (type(tree), tuple(args), state)


def _mutated_estimator_state(obj: Any, rng: random.Random) -> dict:
    import numpy as np

    state = dict(obj.__getstate__())
    keys = [k for k in ("n_features_in_", "n_outputs_", "n_trees_per_iteration_", "estimators_", "tree_", "_predictors") if k in state]
    key = rng.choice(keys)
    if key == "estimators_" and isinstance(state[key], np.ndarray):
        estimators = state[key]
        state[key] = rng.choice((estimators[:, :1], np.concatenate([estimators, estimators], axis=1), estimators.ravel()))
    elif key in ("estimators_", "_predictors"):
        state[key] = list(state[key])[: rng.randrange(len(state[key]) + 1)] + list(state[key])[: rng.randrange(2)]
    elif key == "tree_":
        del state[key]
    else:
        state[key] = _boundary_int(rng, int(state[key]))
    return state


def mutate_tree_pickle(data: bytes, rng: random.Random) -> bytes:
    """The seed (ours, trusted) unpickled and re-pickled with one tree, predictor or estimator damaged at the structure
    level: child/feature/bitset indices, counts, array lengths and shapes, n_features_in_ (what issue 21 crashed)."""
    import pickle

    if rng.random() < 0.2:
        return mutate_pickle(data, rng)
    model = pickle.loads(data)  # noqa: S301 - the fuzzer's own seed, built in seeds.trees
    targets: list[Any] = []
    _collect_tree_parts(model, targets, set())
    target = rng.choice(targets)

    class Damaging(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is not target:
                return NotImplemented
            name = type(obj).__name__
            if name == "Tree":
                return _mutated_tree_reduce(obj, rng)
            reduced = list(obj.__reduce_ex__(4))
            if name == "TreePredictor":
                state = dict(reduced[2])
                key = rng.choice(("nodes", "nodes", "nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets"))
                if key == "nodes":
                    state[key] = _mutate_records(state[key], _PREDICTOR_NODE_FIELDS, rng)
                else:
                    state[key] = state[key][: max(0, len(state[key]) - 1)].copy()
                reduced[2] = state
            elif name == "_BinMapper":
                state = dict(reduced[2])
                state["is_categorical_"] = state["is_categorical_"][:-1].copy() if rng.random() < 0.5 else ~state["is_categorical_"]
                reduced[2] = state
            else:
                reduced[2] = _mutated_estimator_state(obj, rng)
            return tuple(reduced)

    buffer = io.BytesIO()
    Damaging(buffer, protocol=4).dump(model)
    return buffer.getvalue()


def _collect_tree_parts(obj: Any, found: list, seen: set) -> None:
    import numpy as np

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_tree_parts(item, found, seen)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        for item in obj.ravel():
            _collect_tree_parts(item, found, seen)
    elif type(obj).__name__ in ("Tree", "TreePredictor"):
        found.append(obj)
    elif type(obj).__module__.startswith("sklearn."):
        if type(obj).__name__ == "_BinMapper" and getattr(obj, "is_categorical_", None) is not None:
            found.append(obj)
        elif any(k in getattr(obj, "__dict__", {}) for k in ("tree_", "estimators_", "_predictors")):
            found.append(obj)
        for value in getattr(obj, "__dict__", {}).values():
            _collect_tree_parts(value, found, seen)


def mutate_tree_skops(data: bytes, rng: random.Random) -> bytes:
    """A .skops archive with one node array (.npy member) damaged as records, or one integer of schema.json (node_count,
    n_features_in_, n_outputs_, max_depth...) set to a boundary value; re-zipped so skops reads it."""
    import numpy as np

    if rng.random() < 0.15:
        return mutate_zip(data, rng)
    members = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    structured = []
    for name, raw in members.items():
        if name.endswith(".npy"):
            array = np.load(io.BytesIO(raw), allow_pickle=False)
            if array.dtype.names:
                structured.append((name, array))
    if structured and rng.random() < 0.6:
        name, array = rng.choice(structured)
        fields = _TREE_NODE_FIELDS if "left_child" in array.dtype.names else _PREDICTOR_NODE_FIELDS
        out = io.BytesIO()
        np.save(out, _mutate_records(array, fields, rng), allow_pickle=False)
        members[name] = out.getvalue()
    else:
        schema = json.loads(members["schema.json"])
        sites: list = []
        _skops_int_sites(schema, sites)
        node = rng.choice(sites)
        node["content"] = json.dumps(_boundary_int(rng, int(json.loads(node["content"]))))
        members["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return out.getvalue()


def _skops_int_sites(node: Any, out: list) -> None:
    if isinstance(node, dict):
        content = node.get("content")
        if node.get("__loader__") == "JsonNode" and isinstance(content, str) and re.fullmatch(r"-?\d+", content):
            out.append(node)
        for value in node.values():
            _skops_int_sites(value, out)
    elif isinstance(node, list):
        for value in node:
            _skops_int_sites(value, out)


# ------------------------------------------------------------------ LightGBM text, XGBoost JSON / UBJSON

_LGB_NUMERIC_KEYS = ("tree_sizes", "num_class", "num_tree_per_iteration", "max_feature_idx", "num_leaves", "num_cat", "split_feature",
                     "left_child", "right_child", "decision_type", "threshold", "cat_boundaries", "cat_threshold", "leaf_value",
                     "leaf_count", "internal_count", "num_features", "leaf_features", "leaf_coeff", "leaf_const", "is_linear")


def _lightgbm_sizes(text: str) -> str:
    """tree_sizes recomputed from the blocks, so a damaged tree gets past the size check into the tree checks or LightGBM."""
    body = text.split("end of trees", 1)[0]
    starts = [m.start() + 1 for m in re.finditer(r"\nTree=", body)]
    sizes = [len(body[a:b].encode()) for a, b in zip(starts, starts[1:] + [len(body)], strict=True)]
    return re.sub(r"(?m)^tree_sizes=.*$", "tree_sizes=" + " ".join(map(str, sizes)), text, count=1)


def mutate_lightgbm(data: bytes, rng: random.Random) -> bytes:
    """One value of a numeric line (tree_sizes, counts, child and feature indices, categorical boundaries) set to a
    boundary value, dropped or repeated; a line or a tree block deleted or repeated; tree_sizes re-counted half the time."""
    if rng.random() < 0.1:
        return mutate_bytes(data, rng)
    lines = data.decode().split("\n")
    numeric = [i for i, line in enumerate(lines) if line.split("=", 1)[0] in _LGB_NUMERIC_KEYS]
    roll = rng.random()
    if roll < 0.75:
        i = rng.choice(numeric)
        key, _, value = lines[i].partition("=")
        values = value.split()
        edit = rng.random()
        if values and edit < 0.7:
            slot = rng.randrange(len(values))
            values[slot] = str(_boundary_int(rng, len(values) + 1))
        elif values and edit < 0.85:
            del values[rng.randrange(len(values))]
        else:
            values.append(rng.choice(values or ["0"]))
        lines[i] = f"{key}={' '.join(values)}"
    elif roll < 0.85:
        i = rng.choice(numeric)
        lines.insert(i, lines[i]) if rng.random() < 0.5 else lines.pop(i)
    else:
        text = "\n".join(lines)
        blocks = text.split("\nTree=")
        if len(blocks) > 2:
            k = rng.randrange(1, len(blocks) - 1)
            blocks.insert(k, blocks[k]) if rng.random() < 0.5 else blocks.pop(k)
        lines = "\nTree=".join(blocks).split("\n")
    text = "\n".join(lines)
    return (_lightgbm_sizes(text) if rng.random() < 0.5 else text).encode()


_XGB_TREE_SCALARS = ("id",)
_XGB_TREE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_type", "default_left", "split_conditions",
                    "base_weights", "categories", "categories_nodes", "categories_segments", "categories_sizes")


def _mutate_xgboost_document(document: dict, rng: random.Random) -> None:
    model = document["learner"]["gradient_booster"]["model"]
    roll = rng.random()
    if roll < 0.7:
        tree = rng.choice(model["trees"])
        key = rng.choice([k for k in _XGB_TREE_ARRAYS if k in tree and len(tree[k])] or ["left_children"])
        values = [v.item() if hasattr(v, "item") else v for v in tree[key]]
        edit = rng.random()
        if edit < 0.75 and values:
            values[rng.randrange(len(values))] = _boundary_int(rng, len(values))
        elif edit < 0.9 and values:
            del values[rng.randrange(len(values))]
        else:
            values.append(values[0] if values else 0)
        tree[key] = values
    elif roll < 0.85:
        tree = rng.choice(model["trees"])
        key = rng.choice(("num_nodes", "num_feature", "size_leaf_vector", "id"))
        if key == "id":
            tree["id"] = _boundary_int(rng, len(model["trees"]))
        else:
            tree["tree_param"][key] = str(_boundary_int(rng, int(tree["tree_param"][key])))
    else:
        sites = [(model["gbtree_model_param"], "num_trees"), (document["learner"]["learner_model_param"], "num_feature"),
                 (document["learner"]["learner_model_param"], "num_class"), (model, "tree_info"), (model, "iteration_indptr")]
        cats = model.get("cats") or {}
        sites += [(cats, key) for key in ("feature_segments", "sorted_idx") if len(cats.get(key, []))]
        sites += [(enc, key) for enc in cats.get("enc", []) for key in ("offsets", "values") if len(enc.get(key, []))]
        where, key = rng.choice(sites)
        if not isinstance(where[key], str):
            values = [int(v) for v in where[key]]
            values[rng.randrange(len(values))] = _boundary_int(rng, len(values))
            where[key] = values
        else:
            where[key] = str(_boundary_int(rng, int(where[key])))


def mutate_xgboost(data: bytes, kind: str, rng: random.Random) -> bytes:
    """The model decoded, one tree array element / count set to a boundary value (or an array shortened or grown), and
    encoded again (JSON, or UBJSON through write_ubjson); sometimes bytes (our UBJSON reader's bounds)."""
    from packager.safety.boosting import read_ubjson

    if rng.random() < 0.15:
        return mutate_bytes(data, rng) if kind == "xgboost-ubj" or rng.random() < 0.5 else mutate_json(data, rng)
    document = read_ubjson(data) if kind == "xgboost-ubj" else json.loads(data)
    _mutate_xgboost_document(document, rng)
    return write_ubjson(document) if kind == "xgboost-ubj" else json.dumps(document, default=lambda a: a.tolist()).encode()


def write_ubjson(value: Any) -> bytes:
    """UBJSON as XGBoost writes it: objects with L-length keys, typed numeric arrays for numpy arrays."""
    import numpy as np

    if isinstance(value, dict):
        return b"{" + b"".join(b"L" + struct.pack(">q", len(k.encode())) + k.encode() + write_ubjson(v) for k, v in value.items()) + b"}"
    if isinstance(value, np.ndarray):
        marker = {"i1": b"i", "u1": b"U", "i2": b"I", "i4": b"l", "i8": b"L", "f4": b"d", "f8": b"D"}[value.dtype.str[1:]]
        return b"[$" + marker + b"#L" + struct.pack(">q", len(value)) + value.astype(value.dtype.newbyteorder(">")).tobytes()
    if isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return write_ubjson(np.asarray(value, dtype=">i8"))
        return b"[" + b"".join(write_ubjson(v) for v in value) + b"]"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if value is None:
        return b"Z"
    if isinstance(value, int):
        return b"L" + struct.pack(">q", max(min(value, 2**63 - 1), -(2**63)))
    if isinstance(value, float):
        return b"D" + struct.pack(">d", value)
    raw = str(value).encode()
    return b"S" + b"L" + struct.pack(">q", len(raw)) + raw
