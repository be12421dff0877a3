"""TensorFlow graphs (SavedModel folders, frozen ``.pb`` GraphDefs): every op of every graph is checked
against an allow-list, as protobuf data, before TensorFlow loads or runs anything.

A graph is a program: ``WriteFile``, ``ReadFile``, ``MatchingFiles``, ``PyFunc``, ``PrintV2`` to a
``file://`` stream, dataset readers, summary writers, checkpoint savers all run when a serving function
runs (``inspect`` runs it on synthesized inputs). What is checked:

- every MetaGraph of the SavedModel (its main graph) and every function of each function library;
  a function reached through an attr (``f``, ``then_branch``, ``body``, list attrs, nested
  ``NameAttrList`` attrs) must be one of the library's functions, because TF instantiates an unknown
  function name as the raw op of that name (``PartitionedCall(f=WriteFile)`` runs WriteFile);
- a node's op must be on ``ALLOWED_OPS`` or be a library function (a call);
- checkpoint I/O (``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``) only where TF's own loader uses it
  with the path it feeds itself: in the functions the ``saver_def`` nodes call (``_traced_save`` /
  ``_traced_restore``), referenced from nowhere else, with ``RestoreV2``'s prefix the function's first
  argument and the restore node fed by ``saver_def.filename_tensor_name`` (the loader feeds
  ``<dir>/variables/variables`` there: ``load_v1_in_v2``; the TF2 loader builds its own restore ops and
  never runs these functions). A constant prefix (restore from elsewhere) is refused;
- ``InitializeTableFromTextFileV2`` (vocabulary files) only on a path the TF2 loader binds to an asset
  of the SavedModel (``<dir>/assets/<name>``, a plain file name, no ``..`` or ``/``), never a constant.

The protobuf classes come from ``tensorflow.core``: importing them imports the whole ``tensorflow``
package (measured: 3.4 s, the same as ``import tensorflow``, which follows right after for these formats
anyway) but executes no graph. The SavedModel is parsed with TF's own ``parse_saved_model`` (the
function ``tf.saved_model.load`` uses: ``.pb``, then chunked ``.cpb``, then ``.pbtxt``), so the check sees
exactly the message the loader sees.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from packager.errors import InputFileError, UnsafeModelError, first_line
from packager.safety.pickles import TRUST_HINT

# How this list was built: the op sets of every graph and function of benign models, collected with
# ``graph_ops()`` (tests/test_safety_tensorflow.py builds them): Keras 3 Sequential/functional MLPs, a CNN
# with BatchNorm/Dropout, Embedding+LSTM, GRU+Bidirectional LSTM (While loops, TensorList), Normalization,
# StringLookup/IntegerLookup/TextVectorization (hash tables, ragged/string ops), Rescaling/Resizing/
# DepthwiseConv2D, MultiHeadAttention+LayerNormalization, keras.applications MobileNetV2/EfficientNetB0/
# ResNet50 (weights=None), each exported with model.export(), tf.saved_model.save and frozen with
# convert_variables_to_constants_v2; a tf.Module with a StaticHashTable, tf.cond and tf.while_loop; a
# TextFileInitializer vocabulary; packager's own SavedModel/.pb conversion targets. Then widened with
# pure tensor ops of the same families (elementwise math, reductions, nn, array reshaping, control flow,
# stateless random): ops that read only their inputs and write only their outputs. Nothing here opens a
# file, a socket, a process, Python, or a library.
ALLOWED_OPS = frozenset(
    """
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Assert Atan Atan2 Atanh
AvgPool AvgPool3D BatchMatMul BatchMatMulV2 BatchMatMulV3 BatchToSpaceND BiasAdd Bincount Bitcast BitwiseAnd BitwiseOr
BitwiseXor BroadcastArgs BroadcastGradientArgs BroadcastTo Bucketize Cast Ceil CheckNumerics ClipByValue Complex ComplexAbs
Concat ConcatOffset ConcatV2 Conj Const Conv2D Conv2DBackpropInput Conv3D Conv3DBackpropInputV2 Cos Cosh CropAndResize
Cumprod Cumsum DenseBincount DepthToSpace DepthwiseConv2dNative Dequantize DiagPart Digamma DisableCopyOnRead Div DivNoNan
Einsum Elu Enter Equal Erf Erfc Exit Exp ExpandDims Expm1 Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2
FusedBatchNormV3 Gather GatherNd GatherV2 Gelu Greater GreaterEqual Identity IdentityN If Imag InTopKV2 InvertPermutation
IsFinite IsInf IsNan L2Loss LeakyRelu LeftShift Less LessEqual Lgamma LinSpace Log Log1p LogSoftmax LogicalAnd LogicalNot
LogicalOr LoopCond LRN MatMul MatrixBandPart MatrixDiag MatrixDiagPartV3 MatrixDiagV3 MatrixSetDiagV3 Max MaxPool
MaxPool3D MaxPoolV2 Maximum Mean Merge Min Minimum MirrorPad Mod Mul MulNoNan Multinomial Neg NextIteration NoOp
NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5 NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall
Placeholder PlaceholderWithDefault Pow Prod QuantizeV2 RaggedTensorToTensor RaggedTensorToVariant RaggedTensorFromVariant
Range Rank ReadVariableOp Real RealDiv Reciprocal Relu Relu6 Reshape ResizeArea ResizeBicubic ResizeBilinear
ResizeNearestNeighbor Reverse ReverseSequence ReverseV2 RightShift Rint Round Rsqrt ScatterNd Select SelectV2 Selu Shape
ShapeN Sigmoid Sign Sin Sinh Size Slice Snapshot Softmax Softplus Softsign SpaceToBatchND SpaceToDepth SparseToDense
Split SplitV Sqrt Square SquaredDifference Squeeze StatefulPartitionedCall StatelessIf StatelessCase Case
StatelessRandomGetKeyCounter StatelessRandomNormalV2 StatelessRandomUniformV2 StatelessRandomUniformIntV2
StatelessRandomNormal StatelessRandomUniform StatelessTruncatedNormalV2 StatelessWhile StopGradient StridedSlice Sub Sum
Switch Tan Tanh TensorListElementShape TensorListFromTensor TensorListGetItem TensorListLength TensorListReserve
TensorListSetItem TensorListStack TensorScatterAdd TensorScatterUpdate Tile TopKV2 Transpose TruncateDiv TruncateMod
Unique Unpack UnsortedSegmentMax UnsortedSegmentSum VarHandleOp VarIsInitializedOp AssignVariableOp AssignAddVariableOp
AssignSubVariableOp ResourceGather Where While Xdivy Xlog1py Xlogy ZerosLike
HashTableV2 MutableHashTableV2 MutableDenseHashTableV2 LookupTableFindV2 LookupTableImportV2 LookupTableExportV2
LookupTableInsertV2 LookupTableSizeV2 LookupTableRemoveV2 InitializeTableV2 AnonymousHashTable AnonymousMutableHashTable
ShardedFilename StringJoin StringLower StringUpper StringSplitV2 StringStrip StringToHashBucketFast StringToHashBucketStrong
StringToNumber StringLength Substr StaticRegexFullMatch StaticRegexReplace RegexFullMatch RegexReplace AsString StringFormat
UnicodeDecodeWithOffsets UnicodeEncode UnicodeTranscode ReduceJoin StringNGrams
""".split()
)

# saver_def checkpoint ops: allowed only inside the saver's own functions (see the module docstring)
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})
SAVE_OPS = frozenset({"SaveV2", "MergeV2Checkpoints"})
FILE_TABLE_OPS = frozenset({"InitializeTableFromTextFileV2"})

# why a known-dangerous op is refused (any op not allowed is refused; these get a precise reason)
_REASONS = {
    "writes files": "WriteFile Save SaveV2 SaveSlices MergeV2Checkpoints DeleteFile WriteAudioSummary WriteGraphSummary "
    "WriteHistogramSummary WriteImageSummary WriteRawProtoSummary WriteScalarSummary WriteSummary "
    "CreateSummaryFileWriter CreateSummaryDbWriter SummaryWriter FlushSummaryWriter ImportEvent DebugIdentityV2",
    "reads files": "ReadFile MatchingFiles ImmutableConst Restore RestoreV2 RestoreSlice InitializeTableFromTextFile "
    "InitializeTableFromTextFileV2 FixedLengthRecordReader FixedLengthRecordReaderV2 TFRecordReader "
    "TFRecordReaderV2 TextLineReader TextLineReaderV2 WholeFileReader WholeFileReaderV2 LMDBReader "
    "ReaderRead ReaderReadV2 LoadAndRemapMatrix",
    "reads files as a dataset": "TFRecordDataset TFRecordDatasetV2 TextLineDataset FixedLengthRecordDataset "
    "FixedLengthRecordDatasetV2 LMDBDataset SqlDataset CSVDataset CSVDatasetV2 LoadDataset "
    "SaveDataset SaveDatasetV2 ExperimentalSqlDataset ExperimentalLMDBDataset",
    "calls Python": "PyFunc PyFuncStateless EagerPyFunc",
    "prints (to any file://... stream)": "PrintV2 Print",
    "loads native code": "LoadLibrary",
    "talks to other processes": "Send Recv _Send _Recv _HostSend _HostRecv Rpc TryRpc CollectiveReduce CollectiveGather "
    "CollectiveBcastSend CollectiveBcastRecv RegisterDataset DataServiceDataset",
}
REASONS = {op: why for why, ops in _REASONS.items() for op in ops.split()}


@dataclass(frozen=True)
class Site:
    """Where a node lives: the file, the MetaGraph, and the function (None for a main graph)."""

    label: str
    function: str | None

    def node(self, name: str, op: str) -> str:
        where = f"function {self.function}" if self.function else "the main graph"
        return f"{self.label}: op {op} (node {name!r} in {where})"


def check_saved_model(path: str | Path) -> None:
    """Refuse a SavedModel folder any of whose graphs holds an op outside the allow-list."""
    path = Path(path)
    proto = _parse_saved_model(path)
    tf2 = len(proto.meta_graphs) == 1 and proto.meta_graphs[0].HasField("object_graph_def")
    for index, meta in enumerate(proto.meta_graphs):
        label = f"{path.name}/saved_model" + (f"[meta graph {index}]" if len(proto.meta_graphs) > 1 else "")
        _GraphCheck(meta.graph_def, label, meta=meta, tf2=tf2).run()


def check_graph_def(path: str | Path) -> None:
    """Refuse a frozen GraphDef with an op outside the allow-list (no saver, no assets: no file op at all)."""
    path = Path(path)
    graph_pb2 = _protos()[1]
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise InputFileError(
            f"{path.name} is not a TensorFlow GraphDef ({first_line(exc)})", "give a frozen graph written by graph_def.SerializeToString()"
        ) from None
    _GraphCheck(graph, path.name).run()


def graph_ops(path: str | Path) -> set[str]:
    """Every op name in a SavedModel folder or a frozen .pb (main graphs and functions): how ALLOWED_OPS was collected."""
    path = Path(path)
    if path.is_dir():
        graphs = [meta.graph_def for meta in _parse_saved_model(path).meta_graphs]
    else:
        graphs = [_protos()[1].GraphDef.FromString(path.read_bytes())]
    return {node.op for graph in graphs for node in _all_nodes(graph)}


def _all_nodes(graph: Any) -> Iterator[Any]:
    yield from graph.node
    for function in graph.library.function:
        yield from function.node_def


def _protos() -> tuple[Any, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from tensorflow.core.framework import graph_pb2
        from tensorflow.core.protobuf import saved_model_pb2
    except ImportError:
        from packager.errors import MissingDependency

        raise MissingDependency("checking TensorFlow graphs needs tensorflow", "pip install 'packager[tensorflow]'") from None
    return saved_model_pb2, graph_pb2


def _parse_saved_model(path: Path) -> Any:
    _protos()
    from tensorflow.python.saved_model.loader_impl import parse_saved_model

    try:
        return parse_saved_model(str(path))
    except Exception as exc:
        raise InputFileError(
            f"{path.name} holds no readable saved_model.pb ({first_line(exc)})",
            "re-export it with model.export(dir) or tf.saved_model.save",
        ) from None


def _tensor_node(name: str) -> str:
    """'node:0' / '^node' / 'node:output:0' (inside a function) -> 'node'."""
    return name.lstrip("^").split(":")[0]


def _attr_functions(attr: Any) -> Iterator[str]:
    """Every function name an AttrValue refers to, nested NameAttrList attrs and lists included."""
    kind = attr.WhichOneof("value")
    if kind == "func":
        yield attr.func.name
        for inner in attr.func.attr.values():
            yield from _attr_functions(inner)
    elif kind == "list":
        for func in attr.list.func:
            yield func.name
            for inner in func.attr.values():
                yield from _attr_functions(inner)


class _GraphCheck:
    """One main graph with its function library (and, for a SavedModel, its MetaGraph's saver and objects)."""

    def __init__(self, graph: Any, label: str, *, meta: Any = None, tf2: bool = False):
        self.graph, self.label, self.meta, self.tf2 = graph, label, meta, tf2
        self.library = {f.signature.name: f for f in graph.library.function}
        self.callers: dict[str, list[tuple[str | None, str]]] = {}  # function -> (calling function or None, node name)
        saver = meta.saver_def if meta is not None and meta.HasField("saver_def") else None
        self.filename_node = _tensor_node(saver.filename_tensor_name) if saver else None
        self.save_node = _tensor_node(saver.save_tensor_name) if saver else None
        self.restore_node = _tensor_node(saver.restore_op_name) if saver else None

    def run(self) -> None:
        main = Site(self.label, None)
        for node in self.graph.node:
            self._calls(node, main, (None, node.name))
        for function in self.library.values():
            site = Site(self.label, function.signature.name)
            for node in function.node_def:
                self._calls(node, site, (function.signature.name, node.name))
        for node in self.graph.node:
            self._op(node, main, None)
            _check_attr_values(node, main)
        for function in self.library.values():
            site = Site(self.label, function.signature.name)
            for arg in [*function.signature.input_arg, *function.signature.output_arg]:
                _check_type(arg.type, site, f"argument {arg.name!r}")
            for node in function.node_def:
                self._op(node, site, function)
                _check_attr_values(node, site)
        if self.save_node or self.restore_node:
            self._saver_not_run()

    def _calls(self, node: Any, site: Site, caller: tuple[str | None, str]) -> None:
        names = [node.op] if node.op in self.library else []
        for attr in node.attr.values():
            names.extend(_attr_functions(attr))
        for name in names:
            if name not in self.library:
                raise UnsafeModelError(
                    f"{site.node(node.name, node.op)} calls {name!r}, which is no function of the file "
                    "(TensorFlow would run it as the raw op of that name)",
                    TRUST_HINT,
                )
            self.callers.setdefault(name, []).append(caller)

    def _op(self, node: Any, site: Site, function: Any) -> None:
        op = node.op
        if op in self.library or op in ALLOWED_OPS:
            return
        if op in CHECKPOINT_OPS and self._saver_use(node, function):
            return
        if op in FILE_TABLE_OPS and self._asset_use(node, function):
            return
        reason = REASONS.get(op, "is not on the TensorFlow op allow-list (tensor math, control flow, variables, lookup tables)")
        if op in CHECKPOINT_OPS:
            reason += ", outside the SavedModel's own variable save/restore"
        elif op in FILE_TABLE_OPS:
            reason += " from a path that is not one of the SavedModel's assets"
        raise UnsafeModelError(f"{site.node(node.name, op)} {reason}", TRUST_HINT)

    def _saver_use(self, node: Any, function: Any) -> bool:
        """A checkpoint op in the function the saver_def's save (or restore) node calls, and only that node."""
        if function is None:
            return self._main_graph_saver_use(node)
        name = function.signature.name
        callers = self.callers.get(name, [])
        wanted = self.save_node if node.op in SAVE_OPS else self.restore_node
        if not wanted or callers != [(None, wanted)] or self._object_graph_uses(name):
            return False
        if node.op == "RestoreV2":
            first_arg = function.signature.input_arg[0].name if function.signature.input_arg else None
            caller = next((n for n in self.graph.node if n.name == wanted), None)  # a saver_def naming no node (fuzzer)
            return (
                caller is not None
                and bool(node.input)
                and _tensor_node(node.input[0]) == first_arg  # no inputs: IndexError (fuzzer)
                and bool(caller.input)
                and _tensor_node(caller.input[0]) == self.filename_node
            )
        return True

    def _main_graph_saver_use(self, node: Any) -> bool:
        """TF1 savers put the ops in the main graph: RestoreV2 fed by the saver's filename tensor; saves never on a run path."""
        if self.meta is None or self.filename_node is None:
            return False
        if node.op == "RestoreV2":
            return bool(node.input) and _tensor_node(node.input[0]) == self.filename_node
        return node.name not in self._run_ancestors()

    def _asset_use(self, node: Any, function: Any) -> bool:
        """The filename is an argument the TF2 loader binds to one of the SavedModel's asset files."""
        if function is None or not self.tf2 or len(node.input) < 2:
            return False
        name = function.signature.name
        args = [a.name for a in function.signature.input_arg]
        source = _tensor_node(node.input[1])
        if source not in args or any(fn is not None for fn, _ in self.callers.get(name, [])):
            return False  # a constant or computed path, or a function other functions can call with any path
        concrete = self.meta.object_graph_def.concrete_functions.get(name)
        if concrete is None:
            return False
        bound = list(concrete.bound_inputs)
        position = args.index(source) - (len(args) - len(bound))
        if position < 0:
            return False
        obj = self.meta.object_graph_def.nodes[bound[position]]
        if obj.WhichOneof("kind") != "asset" or obj.asset.asset_file_def_index >= len(self.meta.asset_file_def):
            return False
        filename = self.meta.asset_file_def[obj.asset.asset_file_def_index].filename
        return bool(filename) and filename == os.path.basename(filename) and filename not in (".", "..") and "\\" not in filename

    def _object_graph_uses(self, name: str) -> bool:
        if self.meta is None or not self.meta.HasField("object_graph_def"):
            return False
        objects = self.meta.object_graph_def
        if name in objects.concrete_functions:
            return True
        return any(name in _object_functions(obj) for obj in objects.nodes)

    def _run_ancestors(self) -> set[str]:
        """Main-graph nodes a TF1 load may run: signature tensors, init ops, the restore op, and their inputs."""
        roots = set()
        for signature in self.meta.signature_def.values():
            for info in [*signature.inputs.values(), *signature.outputs.values()]:
                roots.add(_tensor_node(info.name))
        for key in ("saved_model_main_op", "legacy_init_op", "table_initializer", "init_op", "saved_model_train_op"):
            if key in self.meta.collection_def:
                collection = self.meta.collection_def[key]
                roots.update(_tensor_node(n) for n in collection.node_list.value)
        if self.restore_node:
            roots.add(self.restore_node)
        nodes = {n.name: n for n in self.graph.node}
        seen: set[str] = set()
        stack = [r for r in roots if r in nodes]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(_tensor_node(i) for i in nodes[name].input if _tensor_node(i) in nodes)
        return seen

    def _saver_not_run(self) -> None:
        """The save node must not be something a load runs (a signature output or init op depending on it)."""
        if self.save_node and self.meta is not None and self.save_node in self._run_ancestors():
            raise UnsafeModelError(
                f"{self.label}: the variable save node {self.save_node!r} runs when the model is loaded or called (it writes a checkpoint)",
                TRUST_HINT,
            )


def _object_functions(obj: Any) -> Iterable[str]:
    kind = obj.WhichOneof("kind")
    if kind == "function":
        yield from obj.function.concrete_functions
    elif kind == "bare_concrete_function":
        yield obj.bare_concrete_function.concrete_function_name


# Attr values TensorFlow trusts: a DataType outside the enum aborts the process (``tensor.cc:1014 Unexpected type``,
# SIGABRT, found by the fuzzer: tests/fuzz/crashers/tensorflow-inspect-crash-SIGABRT-5154, a Const whose tensor dtype
# is -2**31), and a constant's shape is allocated before anything reads it. Checked for every node before TF sees the graph.
MAX_SPLAT_ELEMENTS = 1 << 28  # a constant given by a few values TF repeats to fill its shape (tf.zeros folded): 1 GiB of float32
BAD_VALUE_HINT = "the graph is corrupt or crafted; re-export it"


@functools.lru_cache(maxsize=1)
def _valid_types() -> frozenset[int]:
    from tensorflow.core.framework import types_pb2

    return frozenset(types_pb2.DataType.values())


def _check_type(value: int, site: Any, where: str) -> None:
    if value not in _valid_types():
        raise InputFileError(f"{site.label}: {where} has data type {value}, which is no TensorFlow DataType", BAD_VALUE_HINT)


def _check_attr_values(node: Any, site: Any) -> None:
    for key, attr in node.attr.items():
        where = f"node {node.name!r} attr {key!r}"
        kind = attr.WhichOneof("value")
        if kind == "type":
            _check_type(attr.type, site, where)
        elif kind == "shape":
            _check_shape(attr.shape, site, where)
        elif kind == "tensor":
            _check_tensor(attr.tensor, site, where)
        elif kind == "list":
            for value in attr.list.type:
                _check_type(value, site, where)
            for shape in attr.list.shape:
                _check_shape(shape, site, where)
            for tensor in attr.list.tensor:
                _check_tensor(tensor, site, where)


def _check_shape(shape: Any, site: Any, where: str) -> None:
    if any(dim.size < -1 for dim in shape.dim):
        raise InputFileError(f"{site.label}: {where} has a shape with a dimension below -1 ({[d.size for d in shape.dim]})", BAD_VALUE_HINT)


def _check_tensor(tensor: Any, site: Any, where: str) -> None:
    _check_type(tensor.dtype, site, where)
    _check_shape(tensor.tensor_shape, site, where)
    elements = 1
    for dim in tensor.tensor_shape.dim:
        elements *= max(dim.size, 0)
    if elements > MAX_SPLAT_ELEMENTS and elements > len(tensor.tensor_content):
        raise InputFileError(f"{site.label}: {where} is a constant of {elements:,} elements that the file does not hold", BAD_VALUE_HINT)
