"""TensorFlow: a SavedModel folder or a frozen GraphDef ``.pb`` to ONNX (tf2onnx), TFLite (with int8
and fp16 post-training quantization), Core ML, SavedModel and frozen ``.pb``; runtimes for
SavedModel, ``.pb`` and ``.tflite``.

Every TensorFlow route goes through one value, ``TFGraph``: a ``tf.function`` with a fixed input
signature that takes the inputs positionally and returns the outputs as a tuple. The Keras plugin
builds one from a model, so Keras reuses each conversion here rather than repeating it.

Over 500 lines, for a reason: every conversion and the three runtimes (SavedModel, ``.pb``, ``.tflite``) go through
``TFGraph`` and its import of a frozen graph, so they stay next to it. (Not split in issue 22: a candidate for
``tensorflow_tflite.py``.)
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from packager.contract import Artifact, Format, Framework, Runtime
from packager.deps import quiet_output, require, version_of
from packager.errors import ConversionError, InputFileError, UsageError, first_line
from packager.plugins import converts, framework, runs
from packager.signature import Signature, TensorSpec
from packager.validation import FLOAT32, FP16, INT8, INT8_STATIC, SAME_KERNELS, criteria_table

SERVING = "serving_default"


def tf_module():
    """TensorFlow, imported with its C++ and Python logging turned down to errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_quiet():  # TF 2.21 prints absl "I0000 ... oneDNN" lines at import even at level 3 (measured)
        tf = require("tensorflow", "tensorflow", "TensorFlow models")
    tf.get_logger().setLevel("ERROR")
    return tf


_quiet_lock = threading.RLock()
_quiet_depth = 0


@contextlib.contextmanager
def native_stderr_quiet():
    """File descriptor 2 sent to a scratch file while TensorFlow's C++ code runs: TF, its MLIR-based TFLite
    converter and tf2onnx write log and error lines there directly, past ``sys.stderr``, and the CLI promises one
    stderr line per error (their failures still reach us as exceptions). Re-entrant; one redirection at a time."""
    global _quiet_depth
    import sys
    import tempfile

    with _quiet_lock:
        if _quiet_depth:
            _quiet_depth += 1
            try:
                yield
            finally:
                _quiet_depth -= 1
            return
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (a daemon): nothing to protect
            yield
            return
        _quiet_depth = 1
        with tempfile.TemporaryFile() as scratch:
            sys.stderr.flush()
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                _quiet_depth = 0


@dataclass(frozen=True)
class TFGraph:
    """A TensorFlow computation with named inputs, in order, and ordered outputs."""

    function: Any  # tf.function(*inputs) -> tuple of tensors, input_signature fixed
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    origin: str  # "keras", "savedmodel" or "pb"
    keep_alive: Any = None  # the object owning the variables (a loaded SavedModel)

    def concrete(self) -> Any:
        return self.function.get_concrete_function()

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        tf = tf_module()
        args = [tf.constant(_as_input(feeds[spec.name], spec.dtype)) for spec in self.inputs]
        return {name: value.numpy() for name, value in zip(self.output_names, self.function(*args), strict=True)}


def _as_input(values: Any, dtype: str) -> Any:
    """Floats in the float type the graph's input_signature fixes: the graph takes no other (a float64 CSV read at full
    precision for the source model, ``packager predict`` on an MLflow keras SavedModel, was refused by tf.function's
    binding); other kinds are left as given, for TensorFlow to refuse by name rather than be truncated here."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "f" and dtype in ("float16", "float32", "float64"):
        return array.astype(dtype, copy=False)
    return array


def tensor_specs(inputs: tuple[TensorSpec, ...]) -> list[Any]:
    tf = tf_module()
    return [tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype), name=spec.name) for spec in inputs]


def graph_from_callable(
    call: Callable[..., Any], inputs: tuple[TensorSpec, ...], output_names: tuple[str, ...], origin: str, keep_alive: Any = None
) -> TFGraph:
    """Wrap ``call(*tensors) -> tensor | sequence | dict`` as a positional tf.function returning a tuple."""
    tf = tf_module()

    def ordered(*args):
        result = call(*args)
        if isinstance(result, Mapping):
            return tuple(result[k] for k in sorted(result, key=natural_key))
        return tuple(result) if isinstance(result, (list, tuple)) else (result,)

    return TFGraph(tf.function(ordered, input_signature=tensor_specs(inputs), autograph=False), inputs, output_names, origin, keep_alive)


def natural_key(name: str) -> tuple:
    """output_2 before output_10; Identity before Identity_1."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def spec_from_tf(name: str, tf_spec: Any) -> TensorSpec:
    shape = tuple(tf_spec.shape.as_list()) if tf_spec.shape.rank is not None else (None,)
    return TensorSpec(name, tf_spec.dtype.name, shape)


# ---------------------------------------------------------------- the source framework


@framework("tensorflow")
class TensorFlow(Framework):
    """SavedModel folders (their serving signature) and frozen GraphDefs (placeholders in, sinks out)."""

    file_formats = frozenset({"savedmodel", "pb"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, TFGraph)

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> TFGraph:
        return load_saved_model(path) if fmt == "savedmodel" else load_frozen_graph(path)

    def describe(self, graph: TFGraph) -> dict[str, Any]:
        return {"origin": graph.origin, "inputs": [s.name for s in graph.inputs], "outputs": list(graph.output_names)}

    def versions(self) -> dict[str, str]:
        return {"tensorflow": version_of("tensorflow")}

    def label_outputs(self, graph: TFGraph) -> set[str]:
        return set()

    def signature(self, graph: TFGraph, sample: Any) -> Signature:
        return Signature(graph.inputs)

    def feeds(self, graph: TFGraph, signature: Signature, sample: Any) -> dict[str, Any]:
        return feeds_for(signature, sample)

    def predict(self, graph: TFGraph, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return graph(feeds)


def feeds_for(signature: Signature, sample: Any) -> dict[str, Any]:
    """Sample data as named arrays in the signature's dtypes; synthesized from the shapes when absent."""
    import numpy as np

    from packager.signature import synthesize

    if sample is None:
        return synthesize(signature, rows=16)
    if isinstance(sample, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in sample.items()}
    elif isinstance(sample, (list, tuple)):
        # a list of the wrong length is refused just below (UsageError naming both), not here
        arrays = {spec.name: np.asarray(v) for spec, v in zip(signature.inputs, sample, strict=False)}
    else:
        arrays = {signature.inputs[0].name: np.asarray(sample.to_numpy() if hasattr(sample, "to_numpy") else sample)}
    if set(arrays) != set(signature.input_names):
        if len(arrays) != len(signature.inputs):
            raise UsageError(
                f"the sample has inputs {sorted(arrays)}, the model needs {signature.input_names}",
                "give one array per model input (.npz with those names)",
            )
        arrays = dict(zip(signature.input_names, arrays.values(), strict=True))
    return {spec.name: _checked(spec, arrays[spec.name]) for spec in signature.inputs}


def _checked(spec: TensorSpec, array: Any) -> Any:
    fixed = [(i, d) for i, d in enumerate(spec.shape) if i and d is not None]
    if array.ndim != len(spec.shape) or any(array.shape[i] != d for i, d in fixed):
        raise UsageError(
            f"sample input {spec.name} has shape {array.shape}, the model expects {spec.shape}",
            "give sample rows of the model's input shape",
        )
    return array.astype(spec.dtype, copy=False)


def load_saved_model(path: Path) -> TFGraph:
    tf = tf_module()
    loaded = tf.saved_model.load(str(path))
    signature = getattr(loaded, "signatures", {}).get(SERVING)
    if signature is None:
        found = sorted(getattr(loaded, "signatures", {}) or [])
        raise InputFileError(
            f"{path.name} has no {SERVING!r} signature (it has {found or 'none'})",
            "export it with model.export(dir) or tf.saved_model.save(..., signatures=...)",
        )
    _, kwargs = signature.structured_input_signature
    inputs = tuple(spec_from_tf(name, kwargs[name]) for name in sorted(kwargs))
    outputs = tuple(sorted(signature.structured_outputs, key=natural_key))

    def call(*args: Any) -> Any:  # tf.function calls it with one tensor per input
        return signature(**{spec.name: arg for spec, arg in zip(inputs, args, strict=True)})

    return graph_from_callable(call, inputs, outputs, "savedmodel", keep_alive=loaded)


def load_frozen_graph(path: Path) -> TFGraph:
    """A frozen GraphDef carries no signature: inputs are its placeholders, outputs the nodes nothing consumes."""
    tf = tf_module()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise InputFileError(
            f"{path.name} is not a TensorFlow GraphDef ({exc})",
            "give a frozen graph written by tf.io.write_graph or graph_def.SerializeToString()",
        ) from None
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    # convert_variables_to_constants_v2 leaves "unused_control_flow_input" placeholders behind loops
    placeholders = [n for n in graph_def.node if n.op == "Placeholder" and not n.name.startswith("unused_control_flow_input")]
    consumed = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    sinks = sorted(
        (n.name for n in graph_def.node if n.name not in consumed and n.op not in ("NoOp", "Placeholder", "Const")), key=natural_key
    )
    if not placeholders or not sinks:
        raise InputFileError(
            f"{path.name} has {len(placeholders)} placeholder(s) and {len(sinks)} output node(s)",
            "freeze a graph with named inputs and outputs",
        )
    inputs = tuple(_placeholder_spec(tf, node) for node in placeholders)
    pruned = wrapped.prune(
        [wrapped.graph.get_tensor_by_name(f"{s.name}:0") for s in inputs], [wrapped.graph.get_tensor_by_name(f"{n}:0") for n in sinks]
    )
    return graph_from_callable(pruned, inputs, tuple(sinks), "pb", keep_alive=wrapped)


def _placeholder_spec(tf: Any, node: Any) -> TensorSpec:
    dims = node.attr["shape"].shape
    shape = (None,) if dims.unknown_rank else tuple(d.size if d.size >= 0 else None for d in dims.dim)
    return TensorSpec(node.name, tf.as_dtype(node.attr["dtype"].type).name, shape)


# ---------------------------------------------------------------- conversions (shared with Keras)


def graph_to_onnx(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    tf2onnx = require("tf2onnx", "tensorflow", "TensorFlow to ONNX")
    onnx = require("onnx", "tensorflow", "TensorFlow to ONNX")
    with quiet_output(), native_stderr_quiet():
        graph_def, inputs, outputs = _frozen_for_onnx(graph)
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            name="model",
            input_names=inputs,
            output_names=outputs,
            opset=options.opset,
            tensors_to_rename=_renames(inputs, outputs, graph),
        )
    path = out / "model.onnx"
    onnx.save(proto, str(path))
    return Artifact(
        path,
        {
            "converter": "tf2onnx.convert.from_graph_def",
            "converter_version": version_of("tf2onnx"),
            "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
        },
    )


def _renames(inputs: list[str], outputs: list[str], graph: TFGraph) -> dict[str, str]:
    """Graph tensor names -> the names of the signature: the inputs', and the outputs' (a frozen function's outputs
    are ``Identity:0``, ``Identity_1:0``: the ONNX file disagreed with its own manifest's ``cultivar``)."""
    renames = dict(zip(inputs, (spec.name for spec in graph.inputs), strict=True))
    if len(outputs) == len(graph.output_names) and len(set(graph.output_names)) == len(outputs):
        if not set(graph.output_names) & set(renames.values()):  # an output named like an input keeps its tensor name
            renames.update(zip(outputs, graph.output_names, strict=True))
    return renames


def _frozen_for_onnx(graph: TFGraph) -> tuple[Any, list[str], list[str]]:
    """The graph with its variables and captured tensors folded into constants, and its real input and output names.

    Not ``tf2onnx.convert.from_function``: it takes every non-resource entry of ``concrete_func.inputs`` as a graph
    input, and those include the eager tensors the function captures. Keras 3 ``Normalization`` keeps its adapted
    mean and variance as such tensors, so they became ONNX inputs (tf2onnx 1.17). Freezing first, with the arguments
    tf2onnx itself uses (control flow kept for its loop/LSTM rewriters), leaves only the placeholders of the signature."""
    require("tensorflow", "tensorflow", "TensorFlow to ONNX")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = graph.concrete()
    if any(op.type in TABLE_OPS for op in concrete.graph.get_operations()):
        raise ConversionError(LOOKUP_REFUSAL.format(target="ONNX through tf2onnx (it maps only string<->int64 tables)"), LOOKUP_HINT)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    inputs = [t.name for t in frozen.inputs]
    if len(inputs) != len(graph.inputs):
        raise ConversionError(
            f"freezing left {len(inputs)} graph inputs for a model with {len(graph.inputs)} ({inputs})",
            "the model keeps state TensorFlow cannot fold into constants; use --to savedmodel",
        )
    return frozen.graph.as_graph_def(add_shapes=True), inputs, [t.name for t in frozen.outputs]


def graph_to_frozen_pb(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    require("tensorflow", "tensorflow", "frozen GraphDefs")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with quiet_output():
        frozen = convert_variables_to_constants_v2(graph.concrete())
    path = out / "model.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return Artifact(
        path,
        {
            "converter": "convert_variables_to_constants_v2",
            "inputs": [t.name for t in frozen.inputs],
            "outputs": [t.name for t in frozen.outputs],
        },
    )


def graph_to_saved_model(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    tf = tf_module()
    module = tf.Module()
    owner = graph.keep_alive
    if graph.origin == "savedmodel":  # a loaded SavedModel object owns its variables
        module.owner = owner
    elif hasattr(owner, "variables"):  # Keras 3 variables wrap tf.Variables: track those
        module.tracked = [getattr(v, "value", v) for v in owner.variables]
        # lookup layers (IntegerLookup, StringLookup, TextVectorization) hold a tf.lookup table, not a variable:
        # untracked, tf.saved_model.save refuses the function ("references an 'untracked' resource")
        layers = owner._flatten_layers() if hasattr(owner, "_flatten_layers") else ()  # a frozen graph's owner has no layers
        module.tables = [layer.lookup_table for layer in layers if hasattr(layer, "lookup_table")]
    names = graph.output_names
    serve = tf.function(lambda *args: dict(zip(names, graph.function(*args), strict=True)), input_signature=tensor_specs(graph.inputs))
    module.serve = serve
    path = out / "saved_model"
    with quiet_output():
        tf.saved_model.save(module, str(path), signatures={SERVING: serve.get_concrete_function()})
    return Artifact(path, {"converter": "tf.saved_model.save", "signature": SERVING})


def graph_to_tflite(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    """Through a SavedModel (the converter's best-kept route, and the one that keeps the signature).
    Post-training quantization happens in the converter: dynamic (int8 weights), static (int8,
    calibrated on the calibration rows), fp16 (float16 weights)."""
    import shutil
    import tempfile

    tf = tf_module()
    workdir = Path(tempfile.mkdtemp(prefix="packager-tflite-"))
    try:
        saved = graph_to_saved_model(graph, signature, workdir, options).path
        size_before = len(_tflite_bytes(tf, saved, graph, None)) if options.quantize else None
        flat = _tflite_bytes(tf, saved, graph, options)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = out / "model.tflite"
    path.write_bytes(flat)
    details: dict[str, Any] = {"converter": "tf.lite.TFLiteConverter.from_saved_model", "tensorflow": version_of("tensorflow")}
    if options.quantize:
        details["quantized_in_conversion"] = {"mode": options.quantize, "size_before": size_before}
    return Artifact(path, details)


def _tflite_bytes(tf: Any, saved: Path, graph: TFGraph, options) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if options is not None and options.quantize:
        _configure_quantization(tf, converter, graph, options)
    try:
        with quiet_output(), native_stderr_quiet():
            return converter.convert()
    except Exception as exc:
        if "HashTable" in str(exc):
            raise ConversionError(LOOKUP_REFUSAL.format(target="TFLite (no built-in hash table op)"), LOOKUP_HINT) from None
        if "TensorList" in str(exc):
            raise ConversionError(
                "TFLite cannot lower this recurrent layer with a dynamic batch or sequence length "
                "(it would need Select TF ops, which the TFLite interpreter here lacks)",
                "use --to onnx, or build the RNN with unroll=True over a fixed sequence length",
            ) from None
        raise ConversionError(
            f"TFLite cannot convert this model: {type(exc).__name__}: {first_line(exc)}",
            "use --to onnx, or a model made of TFLite built-in operators",
        ) from exc


def _configure_quantization(tf: Any, converter: Any, graph: TFGraph, options) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if options.quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif options.quantize == "static":
        rows = options.calibration or options.example
        count = len(next(iter(rows.values())))

        def representative():
            for i in range(count):
                yield [rows[spec.name][i : i + 1].astype(spec.dtype) for spec in graph.inputs]

        converter.representative_dataset = representative


def graph_to_coreml(graph: TFGraph, signature: Signature, out: Path, options, *, package: bool = False) -> Any:
    """Through one concrete function (the only Keras 3 route coremltools takes)."""
    from .coreml import convert_to_coreml

    function = graph.concrete()
    try:
        return convert_to_coreml(
            [function], graph.inputs, out, package=package, origin="TensorFlow concrete function", what="this graph", source="tensorflow"
        )
    except ConversionError as exc:
        loops = sorted({op.type for op in function.graph.get_operations() if op.type in LOOP_OPS})
        if loops:  # coremltools' own message is an IndexError from deep inside its frontend
            raise ConversionError(
                "coremltools' TensorFlow frontend cannot convert this recurrent layer "
                f"(a {'/'.join(loops)} loop, as Keras 3 builds a GRU or LSTM)",
                "use --to onnx, savedmodel or pb (Core ML from PyTorch handles an LSTM)",
            ) from exc
        raise


LOOP_OPS = {"While", "StatelessWhile"}
TABLE_OPS = {"LookupTableFindV2", "LookupTableImportV2", "LookupTableSizeV2"}
LOOKUP_REFUSAL = (
    "this model looks values up in a vocabulary table (a Keras IntegerLookup, StringLookup or TextVectorization layer), "
    "which {target} cannot hold"
)
LOOKUP_HINT = "use --to savedmodel or --to keras, or apply the lookup before the model and convert it from the ids"


@converts("tensorflow", to="onnx", quantize={"dynamic", "static", "fp16"}, note="tf2onnx from the serving function")
def tensorflow_to_onnx(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_onnx(graph, signature, out, options)


@converts(
    "tensorflow", to="tflite", quantize={"dynamic", "static", "fp16"}, note="TFLiteConverter; post-training int8 (calibrated) and fp16"
)
def tensorflow_to_tflite(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_tflite(graph, signature, out, options)


@converts("tensorflow", to="coreml", quantize={"weights", "fp16"}, note="coremltools from a concrete function (.mlmodel)")
def tensorflow_to_coreml(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_coreml(graph, signature, out, options)


@converts("tensorflow", to="mlpackage", quantize={"weights"}, note="coremltools ML program from a concrete function")
def tensorflow_to_mlpackage(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_coreml(graph, signature, out, options, package=True)


@converts("tensorflow", to="pb", note="frozen GraphDef (variables folded into constants)")
def tensorflow_to_pb(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_frozen_pb(graph, signature, out, options)


@converts("tensorflow", to="savedmodel", note="SavedModel with a serving_default signature")
def tensorflow_to_savedmodel(graph: TFGraph, signature: Signature, out: Path, options) -> Any:
    return graph_to_saved_model(graph, signature, out, options)


# ---------------------------------------------------------------- runtimes


class _GraphRuntime(Runtime):
    distribution = "tensorflow"

    def predict(self, graph: TFGraph, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        produced = graph(feeds)
        return by_signature(signature, produced)


def by_signature(signature: Signature, produced: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs under the signature's names: by name when they match, else in order."""
    wanted = signature.output_names if signature is not None and signature.outputs else list(produced)
    if set(wanted) <= set(produced):
        return {name: produced[name] for name in wanted}
    return dict(zip(wanted, produced.values(), strict=False))  # in order: outputs beyond the names are dropped


GRAPH_CRITERIA = criteria_table({None: SAME_KERNELS})  # the same TensorFlow kernels as the source
TFLITE_CRITERIA = criteria_table({None: FLOAT32, "dynamic": INT8, "static": INT8_STATIC, "fp16": FP16})


def _check_saved_model(path: Path) -> None:
    from packager.safety.tensorflow import check_saved_model

    check_saved_model(path)


def _check_graph_def(path: Path) -> None:
    from packager.safety.tensorflow import check_graph_def

    check_graph_def(path)


# top-level fields (number -> wire type) of tensorflow.GraphDef; node (1) is required
_GRAPH_DEF = {1: 2, 2: 2, 3: 0, 4: 2, 5: 2}


def is_saved_model(path: Path, head: bytes) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def is_graph_def(path: Path, head: bytes) -> bool:
    from packager.formats import protobuf_matches

    return protobuf_matches(path, head, _GRAPH_DEF, required=(1,))


SAVEDMODEL = Format("savedmodel", title="TensorFlow SavedModel", directory=True, check=_check_saved_model, detect=is_saved_model)
PB = Format("pb", title="TensorFlow frozen GraphDef", suffix=".pb", check=_check_graph_def, detect=is_graph_def, containers=("protobuf",))


def _check_tflite(path: Path) -> None:
    from packager.safety.tflite import check_tflite

    check_tflite(path)


def is_tflite(path: Path, head: bytes) -> bool:
    """A TFLite flatbuffer: the file identifier TFL3 after the 4-byte root offset."""
    return head[4:8] == b"TFL3"


TFLITE = Format("tflite", title="TensorFlow Lite", suffix=".tflite", check=_check_tflite, detect=is_tflite)


@runs(SAVEDMODEL, criteria=GRAPH_CRITERIA)
class SavedModelRuntime(_GraphRuntime):
    name = "tf.saved_model.load"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> TFGraph:
        if not trust:  # an artifact given to validate/predict is as untrusted as a source file
            from packager.safety.tensorflow import check_saved_model

            check_saved_model(path)
        return load_saved_model(Path(path))


@runs(PB, criteria=GRAPH_CRITERIA)
class FrozenGraphRuntime(_GraphRuntime):
    name = "tf.compat.v1.import_graph_def"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> TFGraph:
        if not trust:
            from packager.safety.tensorflow import check_graph_def

            check_graph_def(path)
        return load_frozen_graph(Path(path))


@runs(TFLITE, criteria=TFLITE_CRITERIA)
class TFLiteRuntime(Runtime):
    """The TFLite interpreter through the model's signature runner (resized to each batch)."""

    name = "tf.lite.Interpreter"
    distribution = "tensorflow"
    thread_control = "session"  # Interpreter(num_threads=...)

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        tf = tf_module()
        try:
            with quiet_output(), native_stderr_quiet():
                interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        except Exception as exc:
            raise InputFileError(
                f"{Path(path).name} is not a loadable TFLite model: {type(exc).__name__}: {first_line(exc)}", "re-export it"
            ) from exc
        return interpreter

    def signature_of(self, interpreter: Any) -> Signature:
        """For a bare .tflite file: the serving signature's inputs, in its order."""
        runner = interpreter.get_signature_runner()

        def specs(details: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(name, d["dtype"].__name__, tuple(int(x) if x >= 0 else None for x in d["shape_signature"]))
                for name, d in details.items()
            )

        return Signature(
            specs(runner.get_input_details()), specs(dict(sorted(runner.get_output_details().items(), key=lambda kv: natural_key(kv[0]))))
        )

    def inspect(self, path: Path) -> dict[str, Any]:
        interpreter = self.load(path)

        def describe(details):
            return [
                {"name": d["name"], "dtype": d["dtype"].__name__, "shape": [int(x) if x >= 0 else None for x in d["shape_signature"]]}
                for d in details
            ]

        return {
            "signatures": interpreter.get_signature_list(),
            "inputs": describe(interpreter.get_input_details()),
            "outputs": describe(interpreter.get_output_details()),
            "tensors": len(interpreter.get_tensor_details()),
        }

    def predict(self, interpreter: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        runner = interpreter.get_signature_runner()
        listed = interpreter.get_signature_list()
        names = listed[SERVING if SERVING in listed else next(iter(listed))]["inputs"]
        # names that differ from ours are paired in order; a count that differs is left to the runner to name
        kwargs = dict(zip(names, (feeds[n] for n in signature.input_names), strict=False)) if set(names) != set(feeds) else dict(feeds)
        with native_stderr_quiet():  # the first run prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            produced = runner(**kwargs)
        return by_signature(signature, {k: produced[k] for k in sorted(produced, key=natural_key)})


# ---------------------------------------------------------------- helpers
