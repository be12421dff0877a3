"""ONNX as a target format: run in onnxruntime, inspect (opset, IR), quantize (int8 dynamic/static, fp16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, ConvertOptions, Format, Framework, QuantizeResult, Runtime
from packager.deps import require, version_of
from packager.errors import ConversionError, InputFileError, NotQuantizable, ValidationFailed, first_line
from packager.plugins import converts, framework, quantizes, runs
from packager.validation import FLOAT32, FP16, INT8, INT8_STATIC, criteria_table

# operators whose weights onnxruntime's quantizers turn into int8 (in the default ai.onnx domain)
INT8_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention", "Gather", "EmbedLayerNormalization"})
NOT_QUANTIZABLE_HINT = (
    "this graph stays fp32 (trees and ai.onnx.ml linear operators have no int8 form); use --quantize auto to keep fp32 and record why"
)


def _ort():
    return require("onnxruntime", "sklearn", "running ONNX models")


# ONNX Runtime in float32 reorders sums; int8/fp16 graphs are judged on what a user reads off each output kind
# (class-score ranking, error relative to a regression's spread), not on the last digits of their logits.
ONNX_CRITERIA = criteria_table({None: FLOAT32, "dynamic": INT8, "static": INT8_STATIC, "fp16": FP16})


def _check_onnx(path: Path) -> None:
    """No external-data tensors (a path onnxruntime would read) and no custom operator domains (packager.safety.onnx)."""
    from packager.safety.onnx import check_onnx

    check_onnx(path)


# top-level fields (number -> wire type) of onnx.ModelProto; graph (7) is required
_MODEL_PROTO = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def is_onnx(path: Path, head: bytes) -> bool:
    """A ModelProto with a graph; a file over 64 MiB is not walked: it starts with ir_version (key 0x08)."""
    from packager.formats import protobuf_matches

    return protobuf_matches(path, head, _MODEL_PROTO, required=(7,), unwalked_key=0x08)


ONNX = Format("onnx", title="ONNX", suffix=".onnx", check=_check_onnx, detect=is_onnx, containers=("protobuf",))


@runs(ONNX, criteria=ONNX_CRITERIA)
class OnnxRuntime(Runtime):
    """onnxruntime on the CPU; output names follow the signature (positionally when they differ)."""

    name = "onnxruntime"
    distribution = "onnxruntime"
    thread_control = "session"  # SessionOptions.intra_op_num_threads

    def versions(self) -> dict[str, str]:
        return {"onnx": version_of("onnx"), **super().versions()}

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        ort = _ort()
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures surface as our errors, not as log lines
        if threads:
            options.intra_op_num_threads = threads
        settings = package_settings(Path(path))
        if "graph_optimization_level" in settings:
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[settings["graph_optimization_level"]])
        if settings.get("execution_mode") == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            if threads:
                options.inter_op_num_threads = threads
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputFileError(
                f"onnxruntime cannot load {Path(path).name}: {first_line(exc, 300)}",
                "the file is corrupt or uses operators this onnxruntime lacks",
            ) from exc

    def predict(self, session: Any, signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        declared, names = _io(session)
        missing = [name for name in declared if name not in feeds]
        if missing:
            raise InputFileError(f"the ONNX model needs inputs {missing} that the sample lacks", f"the sample has {sorted(feeds)}")
        inputs = {name: _cast(feeds[name], kind) for name, kind in declared.items()}
        try:
            values = session.run(None, inputs)
        except Exception as exc:
            raise ValidationFailed(
                f"onnxruntime cannot run the model on the sample: {first_line(exc, 300)}",
                "the converter produced a graph that fails on these inputs; try another --opset or report it to the converter",
            ) from exc
        wanted = signature.output_names if signature is not None and signature.outputs else names
        if set(wanted) <= set(names):
            return {n: v for n, v in zip(names, values, strict=True) if n in wanted}
        return dict(zip(wanted, values, strict=False))  # positional: outputs beyond the signature's names are dropped

    def signature_of(self, session: Any) -> Any:
        """For a bare .onnx file (no manifest): the graph's declared inputs and outputs."""
        from packager.signature import Signature, TensorSpec

        def spec(value: Any) -> TensorSpec:
            dtype = _ONNX_TYPES.get(value.type, "float32")
            return TensorSpec(value.name, dtype, tuple(d if isinstance(d, int) else None for d in value.shape))

        return Signature(tuple(spec(v) for v in session.get_inputs()), tuple(spec(v) for v in session.get_outputs()))

    def details(self, session: Any) -> dict[str, Any]:
        return {"providers": session.get_providers()}

    def inspect(self, path: Path) -> dict[str, Any]:
        onnx = require("onnx", "sklearn", "reading ONNX files")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise InputFileError(f"{Path(path).name} is not a readable ONNX model: {first_line(exc, 300)}", "re-export it") from exc
        return {
            "ir_version": proto.ir_version,
            "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "inputs": [_value_info(v) for v in proto.graph.input],
            "outputs": [_value_info(v) for v in proto.graph.output],
            "operators": sorted({n.op_type for n in proto.graph.node}),
        }


# Session settings a package may carry (``conversion.runtime_options`` in its manifest, written by ``packager optimize``):
# they change speed, never the graph's meaning, so predict/bench/serve on the package run what optimize measured.
GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",  # onnxruntime's default
}
EXECUTION_MODES = ("sequential", "parallel")


def check_runtime_options(options: Any) -> dict[str, str]:
    """A manifest's ``runtime_options`` for onnxruntime, checked against the closed set above (a manifest is
    untrusted text: an unknown key or value is refused, never passed on)."""
    if not isinstance(options, Mapping):
        raise InputFileError(f"runtime_options {options!r} is not a mapping", "re-create the package with `packager optimize`")
    allowed = {"graph_optimization_level": tuple(GRAPH_LEVELS), "execution_mode": EXECUTION_MODES}
    for key, value in options.items():
        if key not in allowed or value not in allowed[key]:
            raise InputFileError(
                f"runtime_options {key}={value!r} is not an onnxruntime setting packager knows",
                "known: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in allowed.items()),
            )
    return {str(k): str(v) for k, v in options.items()}


def package_settings(path: Path) -> dict[str, str]:
    """The runtime settings recorded by the package that holds ``path`` ({} for a bare file or a package without
    any): read at every load, so a copied, pushed or pulled package keeps them."""
    from packager.contract import package_conversion_record

    return check_runtime_options(package_conversion_record(path).get("runtime_options") or {})


def _io(session: Any) -> tuple[dict[str, str], list[str]]:
    """Input name -> type and output names, asked once per session (batch inference calls predict per batch)."""
    cached = getattr(session, "_packager_io", None)
    if cached is None:
        cached = ({i.name: i.type for i in session.get_inputs()}, [o.name for o in session.get_outputs()])
        session._packager_io = cached
    return cached


def _value_info(value: Any) -> dict[str, Any]:
    from onnx import helper

    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return {"name": value.name, "dtype": helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?", "shape": dims}


_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "str",
    "tensor(bool)": "bool",
    "tensor(float16)": "float16",
}


def _cast(array: Any, onnx_type: str) -> Any:
    import numpy as np

    wanted = {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(string)": object,
        "tensor(bool)": np.bool_,
        "tensor(float16)": np.float16,
    }.get(onnx_type)
    return np.asarray(array, dtype=wanted) if wanted is not None else np.asarray(array)


# ---------------------------------------------------------------- quantization


@quantizes("onnx", modes={"dynamic", "static", "fp16", "auto"})
def quantize_onnx(src: Path, dst: Path, mode: str, calibration: Mapping[str, Any] | None):
    """onnxruntime.quantization for int8, onnxruntime's float16 converter for fp16."""
    onnx = require("onnx", "sklearn", "ONNX quantization")
    model = onnx.load(str(src))
    int8_ops = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type in INT8_OPS})
    ml_ops = sorted({n.op_type for n in model.graph.node if n.domain == "ai.onnx.ml"})
    if mode == "auto":
        if not int8_ops:
            return QuantizeResult(False, f"kept fp32: nothing to quantize (operators: {', '.join(ml_ops) or 'none with weights'})")
        mode = "dynamic"
    if mode in ("dynamic", "static") and not int8_ops:
        raise NotQuantizable(
            f"--quantize {mode}: the graph has no operator with int8 weights (only {', '.join(ml_ops) or 'none'})", NOT_QUANTIZABLE_HINT
        )
    settings: dict = {}
    try:
        if mode == "dynamic":
            settings = _dynamic(with_complete_types(model), dst)
        elif mode == "static":
            settings = _static(src, with_complete_types(model), dst, calibration)
        else:
            _fp16(with_complete_types(model), dst, onnx, ml_ops)
    except NotQuantizable:
        raise
    except Exception as exc:
        raise ConversionError(
            f"onnxruntime quantization ({mode}) failed: {first_line(exc, 300)}", "try another --quantize mode, or --quantize auto"
        ) from exc
    return QuantizeResult(
        True,
        "",
        {
            "mode": mode,
            "operators": int8_ops if mode != "fp16" else ["float initializers"],
            **settings,
            "tool": f"onnxruntime {version_of('onnxruntime')}",
        },
    )


def cpu_has_vnni() -> bool:
    """VNNI (AVX512-VNNI / AVX-VNNI) computes u8*s8 without the 16-bit saturation of AVX2's VPMADDUBSW."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def with_complete_types(model: Any) -> Any:
    """The model with an element type declared for every tensor that ONNX shape inference leaves untyped.

    ONNX has no type inference for several ``ai.onnx.ml`` operators (``Scaler``, ``Normalizer``...), so in
    skl2onnx's ``StandardScaler -> MatMul`` graphs everything after the scaler is untyped, and onnxruntime's
    quantizer stops at the first MatMul ("Unable to find data type for weight_name='multiplied'"). The
    operator schemas fix the missing types: an output whose type parameter is bound to a typed input takes
    its type, one whose constraint allows a single type takes that. Re-inferred until nothing changes, so
    the standard operators downstream get their types (and shapes) from ONNX itself.
    """
    import onnx
    from onnx import defs

    opsets = {o.domain or "": o.version for o in model.opset_import}
    while True:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {
            v.name: v.type.tensor_type.elem_type
            for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type
        }
        types.update({t.name: t.data_type for t in inferred.graph.initializer})
        added = []
        for node in inferred.graph.node:
            missing = [(i, name) for i, name in enumerate(node.output) if name and name not in types]
            if not missing:
                continue
            try:
                schema = defs.get_schema(node.op_type, opsets.get(node.domain, 1), node.domain)
            except Exception:  # a custom operator: nothing known about it
                continue
            for index, name in missing:
                elem = _schema_output_type(schema, node, index, types)
                if elem:
                    added.append(onnx.helper.make_tensor_value_info(name, elem, None))
        if not added:
            return inferred
        model = inferred
        model.graph.value_info.extend(added)


def _schema_output_type(schema: Any, node: Any, index: int, types: Mapping[str, int]) -> int:
    """The element type the operator's schema fixes for output ``index`` (0 = not fixed)."""
    from onnx import helper

    if index >= len(schema.outputs):
        index = len(schema.outputs) - 1  # a variadic last output
    param = schema.outputs[index].type_str
    # a node may omit trailing optional inputs, or repeat a variadic last one: only the declared pairs are compared
    for formal, actual in zip(schema.inputs, node.input, strict=False):
        if formal.type_str == param and actual in types:
            return types[actual]
    allowed = next((list(c.allowed_type_strs) for c in schema.type_constraints if c.type_param_str == param), [param])
    if len(allowed) != 1 or not allowed[0].startswith("tensor("):
        return 0
    numpy_names = {"float": "float32", "double": "float64", "string": "object", "bool": "bool"}
    name = allowed[0][len("tensor(") : -1]
    import numpy as np

    return helper.np_dtype_to_tensor_dtype(np.dtype(numpy_names.get(name, name)))


def _dynamic(model: Any, dst: Path) -> dict:
    """Per-channel int8 weights; on x86 without VNNI also reduce_range (7-bit weights), or u8*s8
    products saturate and accuracy collapses (measured: transformer cosine 0.965 -> 0.9997)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = not cpu_has_vnni()
    quantize_dynamic(model, str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range)
    return {"per_channel": True, "reduce_range": reduce_range}


class _FeedsReader:
    """CalibrationDataReader over feed arrays, in small batches."""

    def __init__(self, feeds: Mapping[str, Any], batch: int = 16):
        rows = len(next(iter(feeds.values())))
        self._batches = iter([{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, rows, batch)])

    def get_next(self):
        return next(self._batches, None)


def _static(src: Path, model: Any, dst: Path, calibration: Mapping[str, Any] | None) -> dict:
    """QDQ int8, per-channel weights; reduce_range without VNNI for the same saturation reason as
    dynamic (measured on a Keras MLP: max diff 0.34 -> 0.014)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not calibration:
        raise NotQuantizable("--quantize static needs calibration data", "pass --calibration FILE")
    session = OnnxRuntime().load(src)
    feeds = {i.name: _cast(calibration[i.name], i.type) for i in session.get_inputs()}
    reduce_range = not cpu_has_vnni()
    quantize_static(
        model,
        str(dst),
        _FeedsReader(feeds),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
    )
    return {"format": "QDQ", "per_channel": True, "reduce_range": reduce_range}


def _fp16(model: Any, dst: Path, onnx: Any, ml_ops: list[str]) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    if not floats:
        raise NotQuantizable(
            f"--quantize fp16: the graph has no float weight tensors (only {', '.join(ml_ops) or 'no weights'})", NOT_QUANTIZABLE_HINT
        )
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    # TfIdfVectorizer's output type is fixed to float by its schema: converted, onnxruntime refused to load the graph
    # ("Type (tensor(float16)) of output arg ... does not match"; measured on the zoo's TF-IDF + LogisticRegression)
    blocked = [*DEFAULT_OP_BLOCK_LIST, "TfIdfVectorizer"]
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True, op_block_list=blocked)
    onnx.save(converted, str(dst))


# ---------------------------------------------------------------- ONNX as a source like any other


class OnnxFile(str):
    """A loaded ONNX source model: the file's path (converters from ONNX take the file, as they do after a previous hop)."""


@framework("onnx")
class OnnxSource(Framework):
    """An ONNX file as a source model: its declared signature, run in onnxruntime for the expected outputs, converted
    by the graph's edges from ONNX (``--to onnx`` re-packages it; ``--quantize`` then applies)."""

    file_formats = frozenset({"onnx"})
    model_is_file = True

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, OnnxFile)

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        _session(str(path))  # a file onnxruntime cannot load fails here, as a load error
        return OnnxFile(path)

    def versions(self) -> dict[str, str]:
        return {"onnx": version_of("onnx"), "onnxruntime": version_of("onnxruntime")}

    def describe(self, model: Any) -> dict[str, Any]:
        return {"operators": OnnxRuntime().inspect(Path(model))["operators"]}

    def signature(self, model: Any, sample: Any) -> Any:
        return OnnxRuntime().signature_of(_session(str(model)))

    def feeds(self, model: Any, signature: Any, sample: Any) -> dict[str, Any]:
        import numpy as np

        from packager.signature import synthesize

        if sample is None:
            return synthesize(signature, rows=16, int_high=2)
        if isinstance(sample, Mapping):
            return {spec.name: np.asarray(sample[spec.name]) for spec in signature.inputs}
        values = sample.to_numpy() if hasattr(sample, "to_numpy") else np.asarray(sample)
        if len(signature.inputs) != 1:
            raise InputFileError(
                f"the ONNX model takes {len(signature.inputs)} inputs ({', '.join(signature.input_names)}) and the sample is one array",
                "give one array per input in an .npz (np.savez('rows.npz', NAME=...))",
            )
        spec = signature.inputs[0]
        return {spec.name: values.astype(spec.dtype) if spec.dtype != "str" else values.astype(object)}

    def predict(self, model: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return OnnxRuntime().predict(_session(str(model)), signature, feeds)


def _session(path: str) -> Any:
    """One session per file and process (the framework's predict runs for every batch of the evidence)."""
    cached = _SESSIONS.get(path)
    if cached is None:
        cached = _SESSIONS[path] = OnnxRuntime().load(Path(path), trust=True)  # check_file ran before load, untrusted
    return cached


_SESSIONS: dict[str, Any] = {}


@converts("onnx", to="onnx", quantize={"dynamic", "static", "fp16"}, note="the file as given (then --quantize, if asked)")
def onnx_as_is(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
    import shutil

    path = Path(out) / "model.onnx"
    shutil.copyfile(str(model), path)
    return Artifact(path)
