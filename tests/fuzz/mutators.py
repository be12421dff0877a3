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
import math
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
                        new = np.asarray(old).astype(rng.choice(("int8", "float64", "S4", "bool")), copy=False) if np.asarray(old).dtype.kind != "O" else old
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
                action = rng.choice(("delete", "duplicate", "clear") if field.message_type is None or field.message_type.GetOptions().map_entry
                                    else ("delete", "duplicate", "clear", "splice"))
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
