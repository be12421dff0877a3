"""OpenVINO IR as a target and an untrusted input: two edges of the conversion graph (ONNX -> OpenVINO, and Hugging Face
-> OpenVINO through OpenVINO's PyTorch front end, at the end of this file), a CPU runtime, fp16 and int8-weights
quantizers, and the structure check an IR passes before OpenVINO parses it.

Every source that reaches ONNX reaches OpenVINO through ``packager.graph``; a Hugging Face folder takes its direct edge
(the graph prefers a direct edge), which keeps attention fused. Nothing in the core names this format.

OpenVINO's ONNX front end (2026.4) converts no classical-ML operator but ``Normalizer``: a scikit-learn, XGBoost or
LightGBM graph (``TreeEnsembleClassifier``, ``LinearClassifier``, ``Scaler``...) fails with "No conversion rule found"
(measured). The edge therefore rewrites the ``ai.onnx.ml`` operators it knows into standard ONNX operators first
(``_rewrite_ml``): trees become the GEMM form (Gather the split features, compare, one batched MatMul against each
tree's path matrix, Equal to find the leaf, MatMul against the leaf values), linear models a MatMul. What it cannot
rewrite is a one-line error naming the operator; a rewrite that computed something else would be caught by the
validation of the final artifact against the original source, which the pipeline always runs.

Quantization: fp16 weights (``save_model``), int8 weights (``--quantize weights``: NNCF's ``compress_weights``, int8
asymmetric per output channel), bf16 compute recorded in the IR (``bf16``), or both (``weights-bf16``); static int8,
activations too, from calibration rows (``static``: NNCF's ``quantize``; ``static-bf16``: with bf16 for what stays in
float). On all-MiniLM-L6-v2, static int8 is the fastest artifact packager makes (issue 23,
benchmarks/results/optimize.md).

Over 500 lines, for a reason: the acceptance of issue 22 is one plugin file and 0 core files for this format, so the
``ai.onnx.ml`` rewrite (the second half) lives here; it is the first thing to move out should a second ONNX consumer
(TensorRT) need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, ConvertOptions, Format, QuantizeResult, Runtime
from packager.deps import require
from packager.errors import (
    ConversionError,
    InputFileError,
    NotQuantizable,
    UnsafeModelError,
    UnsupportedConversion,
    ValidationFailed,
    first_line,
)
from packager.plugins import converts, quantizes, runs
from packager.validation import FLOAT32, FP16, INT8, INT8_STATIC, criteria_table

XML, BIN = "model.xml", "model.bin"
FOLDER = "openvino"
MAX_XML_BYTES = 256 << 20  # MiniLM's IR is 0.3 MB of XML: anything near this is not a model description
IR_VERSIONS = frozenset({"10", "11"})
OPSET = re.compile(r"opset\d{1,2}")
ITEM_BYTES = {
    "f64": 8,
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "i64": 8,
    "u64": 8,
    "i32": 4,
    "u32": 4,
    "i16": 2,
    "u16": 2,
    "i8": 1,
    "u8": 1,
    "boolean": 1,
}
UNSAFE_HINT = "packager refuses IRs it cannot check; re-export the model with openvino.save_model (or give --trust if you made it)"


def _ov():
    """openvino, imported without its usage telemetry. `import openvino` initialises a Google Analytics client that
    sends unless a consent file declines or the process runs "in CI" (openvino_telemetry's OptInChecker), and writes
    ~/intel/openvino_ga_cid and ~/intel/stats on the way (measured with a fresh HOME). Nothing may leave the machine at
    run time, nor land in the user's home: the import runs with its documented CI switch, and the consent checks the
    converter makes later (convert_model re-initialises the client) answer "declined"."""
    import os
    import sys

    if "openvino" not in sys.modules:
        saved = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            require("openvino", "openvino", "OpenVINO IR")
        finally:
            if saved is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = saved
    module = sys.modules["openvino"]
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker  # type: ignore[import-untyped]
    except ImportError:  # no telemetry package: nothing to decline
        return module
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED
    return module


# ---------------------------------------------------------------- the format: detection and the structure check


def _xml_of(folder: Path) -> Path | None:
    xmls = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and p.is_file()) if folder.is_dir() else []
    return xmls[0] if len(xmls) == 1 else None


def _is_ir_folder(path: Path, head: bytes) -> bool:
    """A folder holding one XML whose root element is ``net`` and its ``.bin`` beside it (what ``save_model`` writes)."""
    xml = _xml_of(path)
    if xml is None or not xml.with_suffix(".bin").is_file():
        return False
    with xml.open("rb") as fh:
        text = fh.read(1 << 16).decode("utf-8", errors="replace")
    return re.search(r"<net[\s>]", text) is not None and "<layers" in text


def check_ir(path: Path) -> None:
    """What an IR can name outside itself, checked before OpenVINO parses a byte of it:

    - entities and DTDs (file reads, billion laughs): defusedxml refuses them;
    - operations from a library: a layer whose ``version`` is not a standard ``opsetN`` needs an extension that
      ``Core.add_extension`` would load (native code); packager never loads one and refuses the IR;
    - weights: every ``Const`` reads ``size`` bytes at ``offset`` of the ``.bin``, checked against the file's size and the
      tensor's shape (the weights file itself is only ever the one beside the XML: ``read_model`` gets both paths);
    - anything else in the folder that is not a plain file (links, devices) is refused by the folder check before this.
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse

    folder = Path(path)
    xml = _xml_of(folder)
    if xml is None:
        raise InputFileError(f"{folder.name} holds no single IR .xml", "an OpenVINO IR folder holds one model.xml and its model.bin")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise InputFileError(f"{folder.name}/{xml.name} has no {weights.name} beside it", "copy the .bin written with the .xml")
    if xml.stat().st_size > MAX_XML_BYTES:
        raise UnsafeModelError(f"{folder.name}/{xml.name} is {xml.stat().st_size:,} bytes of XML", UNSAFE_HINT)
    try:
        root = parse(str(xml), forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as exc:
        raise UnsafeModelError(f"{folder.name}/{xml.name} declares a DTD or entities ({type(exc).__name__})", UNSAFE_HINT) from None
    except Exception as exc:
        raise InputFileError(f"{folder.name}/{xml.name} is not readable XML: {first_line(exc, 200)}", "re-export the IR") from None
    if root.tag != "net" or root.get("version") not in IR_VERSIONS:
        raise InputFileError(
            f"{folder.name}/{xml.name} is not an OpenVINO IR v10/v11 (root {root.tag!r}, version {root.get('version')!r})",
            "re-export it with openvino.save_model",
        )
    size = weights.stat().st_size
    for layer in root.iter("layer"):
        name, kind, version = layer.get("name", "?"), layer.get("type", "?"), layer.get("version", "")
        if not OPSET.fullmatch(version):
            raise UnsafeModelError(
                f"{folder.name}/{xml.name}: layer {name!r} ({kind}) comes from {version!r}, not a standard opset: it needs an "
                "extension library, which packager never loads",
                UNSAFE_HINT,
            )
        data = layer.find("data")
        if kind == "Const" and data is not None:
            _check_const(folder.name, name, data.attrib, size)


def _check_const(folder: str, name: str, attrs: Mapping[str, str], size: int) -> None:
    try:
        offset, length = int(attrs["offset"]), int(attrs["size"])
    except (KeyError, ValueError):
        raise UnsafeModelError(f"{folder}: constant {name!r} has no integer offset/size", UNSAFE_HINT) from None
    if offset < 0 or length < 0 or offset + length > size:
        raise UnsafeModelError(
            f"{folder}: constant {name!r} reads bytes {offset}..{offset + length} of a {size}-byte weights file", UNSAFE_HINT
        )
    item = ITEM_BYTES.get(attrs.get("element_type", ""))
    shape = attrs.get("shape", "")
    if item is not None and re.fullmatch(r"\d+(,\s*\d+)*|", shape):
        count = 1
        for dim in (int(d) for d in shape.split(",") if d.strip()):
            count *= dim
        if count * item != length:
            raise UnsafeModelError(f"{folder}: constant {name!r} of shape [{shape}] does not fill its {length} bytes", UNSAFE_HINT)


OPENVINO = Format("openvino", title="OpenVINO IR", directory=True, detect=_is_ir_folder, check=check_ir)


# ---------------------------------------------------------------- the runtime


@dataclass(frozen=True)
class Loaded:
    """A compiled IR, one infer request reused across calls (bench and batch predict call ``predict`` per batch)."""

    compiled: Any
    request: Any
    inputs: tuple[tuple[str, str], ...]  # (name, numpy dtype)
    outputs: tuple[tuple[str, ...], ...]  # every tensor name of each output
    threads: int | None
    precision: str = "f32"  # what the CPU plugin computes in (the IR's recorded precision, else f32)


# bf16 compute keeps 8 bits of mantissa in every activation: judged as int8 is, on what a user reads off the output
# (MiniLM, min cosine against the fp32 source on 63 sentences, measured: bf16 0.99997, int8 weights + bf16 0.9991)
# static int8 (activations too, ranges from calibration rows): the criterion of ONNX's static mode (INT8_STATIC)
OPENVINO_CRITERIA = criteria_table(
    {
        None: FLOAT32,
        "fp16": FP16,
        "weights": INT8,
        "bf16": INT8,
        "weights-bf16": INT8,
        "static": INT8_STATIC,
        "static-bf16": INT8_STATIC,
    }
)


@runs(OPENVINO, criteria=OPENVINO_CRITERIA)
class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU at f32 inference precision unless the IR records bf16 (``--quantize bf16``; the CPU plugin's
    default hint is bf16 on CPUs that have it, which is not the fp32 artifact that was validated: an IR never gets it
    by accident). ``threads`` is the compiled model's INFERENCE_NUM_THREADS."""

    name = "openvino"
    distribution = "openvino"
    thread_control = "session"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        ov = _ov()
        folder = Path(path)
        if not trust:
            check_ir(folder)  # also when called without safety.check_file first: the IR is parsed below
        xml = _xml_of(folder) if folder.is_dir() else folder
        if xml is None:
            raise InputFileError(f"{folder.name} holds no single IR .xml", "give the folder openvino.save_model wrote")
        config: dict[str, Any] = {"NUM_STREAMS": 1}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if threads == 1:
            # The CPU plugin pins its inference thread to one core by default (ENABLE_CPU_PINNING); on a host whose cores
            # other processes share, the pinned thread waits for its core while another is free. Measured on
            # all-MiniLM-L6-v2 int8 weights + bf16, the same IR side by side, 11 interleaved rounds, load 4 on 2 cores:
            # unpinned 0.99 / 0.98 / 0.83 / 0.80 of the pinned time at 1x32 / 1x128 / 32x32 / 32x128 (a second run at
            # load 5-11: 0.94 / 0.93 / 0.93 / 0.83). Numbers unchanged (the same kernels). Not measured with more threads.
            config["ENABLE_CPU_PINNING"] = False
        try:
            core = ov.Core()
            model = core.read_model(str(xml), str(xml.with_suffix(".bin")))
            precision = recorded_precision(model, folder.name)
            compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": precision})
        except InputFileError:
            raise
        except Exception as exc:
            raise InputFileError(
                f"OpenVINO cannot load {folder.name}: {first_line(exc, 300)}", "the IR is corrupt or needs a newer OpenVINO"
            ) from exc
        inputs = tuple((p.get_any_name(), _numpy(p.get_element_type())) for p in compiled.inputs)
        outputs = tuple(tuple(sorted(p.get_names())) or (f"output{i}",) for i, p in enumerate(compiled.outputs))
        return Loaded(compiled, compiled.create_infer_request(), inputs, outputs, threads, precision)

    def predict(self, handle: Loaded, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        missing = [name for name, _ in handle.inputs if name not in feeds]
        if missing:
            raise InputFileError(f"the OpenVINO model needs inputs {missing} that the sample lacks", f"the sample has {sorted(feeds)}")
        inputs = {name: np.ascontiguousarray(np.asarray(feeds[name], dtype=dtype)) for name, dtype in handle.inputs}
        try:
            result = handle.request.infer(inputs)
        except Exception as exc:
            raise ValidationFailed(
                f"OpenVINO cannot run the model on the sample: {first_line(exc, 300)}", "the IR fails on these inputs; report it"
            ) from exc
        values = [np.array(result[port]) for port in handle.compiled.outputs]
        wanted = list(signature.output_names) if signature is not None and signature.outputs else [n[0] for n in handle.outputs]
        by_name = {name: value for names, value in zip(handle.outputs, values, strict=True) for name in names}
        if set(wanted) <= set(by_name):
            return {name: by_name[name] for name in wanted}
        return dict(zip(wanted, values, strict=False))  # positional, as the ONNX runtime does

    def signature_of(self, handle: Loaded) -> Any:
        from packager.signature import Signature, TensorSpec

        def spec(port: Any, name: str) -> TensorSpec:
            shape = port.get_partial_shape()
            dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else (None,)
            return TensorSpec(name, _numpy(port.get_element_type()), dims)

        ins = tuple(spec(p, n) for p, (n, _) in zip(handle.compiled.inputs, handle.inputs, strict=True))
        outs = tuple(spec(p, n[0]) for p, n in zip(handle.compiled.outputs, handle.outputs, strict=True))
        return Signature(ins, outs)

    def details(self, handle: Loaded) -> dict[str, Any]:
        used = handle.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16 falls back to f32 on CPUs without it
        return {"device": "CPU", "inference_precision": used, **({"threads": handle.threads} if handle.threads else {})}

    def inspect(self, path: Path) -> dict[str, Any]:
        from defusedxml.ElementTree import parse

        check_ir(Path(path))  # inspect reads the XML: the same refusals as loading
        xml = _xml_of(Path(path))
        assert xml is not None  # check_ir raised otherwise
        root = parse(str(xml), forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
        layers = list(root.iter("layer"))
        return {
            "ir_version": root.get("version"),
            "name": root.get("name"),
            "layers": len(layers),
            "operations": sorted({layer.get("type", "?") for layer in layers}),
            "opsets": sorted({layer.get("version", "?") for layer in layers}),
            "weights_bytes": xml.with_suffix(".bin").stat().st_size,
        }


PRECISION_KEY = ["packager", "inference_precision"]  # where --quantize bf16 records it in the IR's rt_info
PRECISIONS = ("f32", "bf16")


def recorded_precision(model: Any, where: str) -> str:
    """The inference precision the IR records (``--quantize bf16``), f32 when none; any other value is refused (the
    XML is the user's: it names no setting packager has not validated)."""
    if not model.has_rt_info(PRECISION_KEY):
        return "f32"
    value = str(model.get_rt_info(PRECISION_KEY).astype(str))
    if value not in PRECISIONS:
        raise InputFileError(
            f"{where}: the IR records inference precision {value[:40]!r}, not one of {', '.join(PRECISIONS)}",
            "re-create the package with packager convert --quantize",
        )
    return value


def _numpy(element_type: Any) -> str:
    return {
        "f32": "float32",
        "f64": "float64",
        "f16": "float16",
        "i64": "int64",
        "i32": "int32",
        "boolean": "bool",
        "u8": "uint8",
        "i8": "int8",
    }.get(element_type.get_type_name(), "float32")


# ---------------------------------------------------------------- the edge ONNX -> OpenVINO, and fp16 weights


@converts(
    "onnx",
    to="openvino",
    quantize={"fp16", "weights", "bf16", "weights-bf16", "static", "static-bf16"},
    note="openvino.convert_model; classical-ML operators rewritten to standard ONNX first; int8 through NNCF",
)
def onnx_to_openvino(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
    """``model`` is the ONNX file the previous hop wrote. fp32 weights (``save_model`` compresses to fp16 by default,
    which would be a silent quantization)."""
    ov = _ov()
    onnx = require("onnx", "sklearn", "reading ONNX files")
    proto = onnx.load(str(model))
    rewritten = sorted({n.op_type for n in proto.graph.node if n.domain == "ai.onnx.ml" and n.op_type in _REWRITES})
    source = str(model)
    if rewritten:
        source = str(Path(out) / "rewritten.onnx")
        onnx.save(_rewrite_ml(proto), source)
    try:
        converted = ov.convert_model(source)
    except Exception as exc:
        text = str(exc)
        unsupported = re.findall(r"No conversion rule found for operations: ([^\n]+)", text)
        if unsupported:  # a documented limit of OpenVINO's ONNX front end, not a defect: --to all reports it as refused
            raise UnsupportedConversion(
                f"OpenVINO has no conversion rule for {unsupported[0].strip()}", "keep --to onnx for this model"
            ) from exc
        raise ConversionError(f"openvino.convert_model failed: {first_line(exc, 300)}", "keep --to onnx for this model") from exc
    finally:
        if rewritten:
            Path(source).unlink(missing_ok=True)
    folder = Path(out) / FOLDER
    folder.mkdir()
    ov.save_model(converted, str(folder / XML), compress_to_fp16=False)
    return Artifact(folder, {"openvino": ov.__version__, **({"rewritten_ml_operators": rewritten} if rewritten else {})})


QUANTIZE_MODES = ("fp16", "weights", "bf16", "weights-bf16", "static", "static-bf16")
CALIBRATED = ("static", "static-bf16")  # the modes that need calibration rows (--calibration, optimize's --data)
BF16_MODES = ("bf16", "weights-bf16", "static-bf16")


@quantizes("openvino", modes=set(QUANTIZE_MODES))
def quantize_openvino(src: Path, dst: Path, mode: str, calibration: Mapping[str, Any] | None) -> QuantizeResult:
    """- ``fp16``: fp16 weights (``save_model(compress_to_fp16=True)``): the CPU decompresses them to f32 at load time,
      so it halves the files, not the arithmetic;
    - ``weights``: int8 weights through NNCF (``_int8_weights``);
    - ``bf16``: bf16 compute, recorded in the IR (``PRECISION_KEY``) for the runtime; the weights stay f32. The CPU
      plugin's own default on CPUs with AVX512_BF16 (MiniLM 32x32, OpenVINO's own IR: 0.51x the time of f32, measured);
    - ``weights-bf16``: both;
    - ``static``: int8 weights and activations through NNCF's ``quantize`` with the calibration rows (``_int8_static``);
    - ``static-bf16``: static int8, the operators left in float (Softmax, LayerNorm, GELU) computed in bf16."""
    ov = _ov()
    if mode not in QUANTIZE_MODES:
        raise NotQuantizable(f"OpenVINO --quantize {mode} is not offered", f"use --quantize {' or '.join(QUANTIZE_MODES)}")
    if mode in CALIBRATED and not calibration:
        raise NotQuantizable(
            f"OpenVINO --quantize {mode} needs calibration rows: NNCF sets each activation's int8 range from them",
            "pass --calibration FILE (rows like the model's input; optimize takes them from --data), or use --quantize weights",
        )
    xml = _xml_of(Path(src))
    assert xml is not None  # we wrote it
    model = ov.Core().read_model(str(xml), str(xml.with_suffix(".bin")))
    details: dict[str, Any] = {"mode": mode, "tool": f"openvino {ov.__version__} save_model(compress_to_fp16=True)"}
    if mode in ("weights", "weights-bf16"):
        model, details = _int8_weights(model)
        details["mode"] = mode
    if mode in CALIBRATED:
        assert calibration is not None
        model, details = _int8_static(model, calibration)
        details["mode"] = mode
    if mode in BF16_MODES:
        if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            # the plugin would compute in f32 here: the verdict would judge f32, and a CPU with bf16 would run unjudged bf16
            raise NotQuantizable(
                f"--quantize {mode}: this CPU computes no bf16 (no AVX512_BF16/AMX), so bf16 cannot be validated here",
                f"convert on the CPU you deploy on, or use --quantize {mode.removesuffix('-bf16').replace('bf16', 'weights')}",
            )
        model.set_rt_info("bf16", PRECISION_KEY)
        details["inference_precision"] = "bf16"
        if mode == "bf16":
            details["tool"] = f"openvino {ov.__version__} INFERENCE_PRECISION_HINT=bf16"
    Path(dst).mkdir()
    ov.save_model(model, str(Path(dst) / XML), compress_to_fp16=mode == "fp16")
    return QuantizeResult(True, "", details)


def _nncf() -> Any:
    import logging
    import os

    # NNCF sends usage telemetry unless it runs "in CI": nothing leaves this machine at run time (NNCF's documented switch)
    os.environ.setdefault("NNCF_CI", "1")
    nncf = require("nncf", "openvino", "OpenVINO int8")
    nncf.set_log_level(logging.ERROR)  # its bit-width table and progress bar go to stdout
    return nncf


def _int8_weights(model: Any) -> tuple[Any, dict[str, Any]]:
    """``nncf.compress_weights`` in its default mode, INT8_ASYM per output channel: data-free (no calibration rows), the
    weights of MatMul, Convolution and embedding Gather stored as u8 with a scale and zero point per channel; the
    activations stay f32. On MiniLM (measured side by side, load ~15): min cosine 0.9991 against the fp32 source on
    held-out sentences; 0.57 / 0.58 / 0.53 / 0.45 of fp32 ONNX's time at 1x32 / 1x128 / 32x32 / 32x128, where
    onnxruntime's int8 is 0.73 / 0.88 / 1.03 / 0.91.

    An IR in which NNCF compressed nothing (no weighted operator) is refused, never packaged as "int8"."""
    from packager.deps import quiet_output

    nncf = _nncf()
    before = _weight_types(model)
    try:
        with quiet_output():
            compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as exc:
        raise ConversionError(f"nncf.compress_weights failed: {first_line(exc, 300)}", "keep --quantize fp16 or none") from exc
    after = _weight_types(compressed)
    int8 = after.get("u8", 0) + after.get("i8", 0) - before.get("u8", 0) - before.get("i8", 0)
    if int8 <= 0:
        raise NotQuantizable(
            "--quantize weights: NNCF found no MatMul, Convolution or embedding weights to compress in this IR",
            "keep the fp32 IR (or --quantize fp16)",
        )
    return compressed, {
        "mode": "weights",
        "scheme": "int8 asymmetric, per output channel; activations in the inference precision",
        "int8_constants": int8,
        "tool": f"nncf {nncf.__version__} compress_weights(INT8_ASYM)",
    }


MAX_CALIBRATION_ROWS = 300  # NNCF's default subset_size: its documentation's "for example, of 300 samples"
# SmoothQuant's MatMul alpha, tried in this order on transformers, the one with the smallest mean error on the
# calibration rows kept. NNCF's default (0.95) sits at a cliff on all-MiniLM-L6-v2 (min cosine on 62 held-out sentences
# against the fp32 source, measured: alpha 0.6 0.9905, 0.7 0.9949, 0.8 0.9948, 0.85 0.9959, 0.9 0.9944, 0.95 0.9887,
# SmoothQuant off 0.9872); the calibration rows' mean error ranks 0.85 best of these three, at no cost in speed.
SMOOTH_QUANT_ALPHAS = (0.95, 0.85, 0.7)


def _int8_static(model: Any, calibration: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize``: int8 weights (symmetric, per channel) and activations (per tensor, ranges from the calibration
    rows) as FakeQuantize operators that the CPU plugin runs as int8 kernels (VNNI/AMX where the CPU has them). On
    all-MiniLM-L6-v2, 1 thread, side by side (``static-bf16``): 0.51-0.93x the time of the fastest peer (OpenVINO's own
    IR from the torch module, NNCF int8 weights) at 1x32 / 1x128 / 32x32 / 32x128, 0.70x int8 weights + bf16 at batch
    32: int8 matmuls beat bf16 where the model is compute bound (benchmarks/results/optimize.md).

    A transformer (an attention block: MatMul of two activations into Softmax, or ScaledDotProductAttention) is quantized
    with ``model_type=TRANSFORMER`` (NNCF keeps LayerNorm, Softmax and the attention's activation MatMuls' sensitive
    inputs in float and runs SmoothQuant first), its SmoothQuant alpha chosen on the calibration rows
    (``SMOOTH_QUANT_ALPHAS``); other models with NNCF's defaults (the performance preset). An IR in which NNCF
    quantized nothing is refused, never packaged as "int8"."""
    from packager.deps import quiet_output

    ov = _ov()
    nncf = _nncf()
    rows = _calibration_rows(model, calibration)
    transformer = _is_transformer(model)
    dataset = nncf.Dataset(rows)
    alphas = SMOOTH_QUANT_ALPHAS if transformer else (None,)
    reference = _outputs(ov.Core(), model, rows) if len(alphas) > 1 else []
    errors: dict[float | None, float] = {}
    alpha: float | None = None
    quantized: Any = None  # the best so far: one quantized copy held at a time besides the source
    for tried in alphas:
        options: dict[str, Any] = {"subset_size": len(rows)}
        if tried is not None:
            smooth = nncf.AdvancedSmoothQuantParameters(matmul=tried)
            options |= {
                "model_type": nncf.ModelType.TRANSFORMER,
                "advanced_parameters": nncf.AdvancedQuantizationParameters(smooth_quant_alphas=smooth),
            }
        try:
            with quiet_output():
                candidate = nncf.quantize(model.clone(), dataset, **options)
        except Exception as exc:
            raise ConversionError(f"nncf.quantize failed: {first_line(exc, 300)}", "keep --quantize weights or none") from exc
        if reference:
            errors[tried] = _mean_error(reference, _outputs(ov.Core(), candidate, rows))
        if quantized is None or errors[tried] < errors[alpha]:
            alpha, quantized = tried, candidate
    fake = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if fake == 0:
        raise NotQuantizable(
            "--quantize static: NNCF found nothing to quantize in this IR (no MatMul, Convolution or other int8 operator)",
            "keep the fp32 IR (or --quantize fp16)",
        )
    details: dict[str, Any] = {
        "mode": "static",
        "scheme": "int8 weights symmetric per channel, activations per tensor from calibration rows",
        "calibration_rows": len(rows),
        "fake_quantize": fake,
        "model_type": "transformer" if transformer else "default",
        "tool": f"nncf {nncf.__version__} quantize",
    }
    if alpha is not None:
        details["smooth_quant_alpha"] = alpha
        details["calibration_mean_rel_error"] = {str(a): round(e, 5) for a, e in errors.items()}
    return quantized, details


def _calibration_rows(model: Any, calibration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One feed dict per calibration row (NNCF collects statistics sample by sample), at most MAX_CALIBRATION_ROWS.
    Token rows padded to a longer neighbour are cut at their ``attention_mask``: padding positions would widen the
    activation ranges with values the model masks out."""
    import numpy as np

    types = {port.get_any_name(): _numpy(port.get_element_type()) for port in model.inputs}
    names = list(types)
    missing = [n for n in names if n not in calibration]
    if missing:
        raise NotQuantizable(
            f"the calibration rows lack the model's inputs {missing}", f"give rows with {names} (they have {sorted(calibration)})"
        )
    arrays = {n: np.asarray(calibration[n], dtype=types[n]) for n in names}
    bad = [n for n, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:  # NNCF takes them as ranges (measured: NaN or inf rows gave an IR agreeing on 3-31% of labels)
        raise NotQuantizable(
            f"--quantize static: the calibration rows of {bad} hold NaN or infinite values, which would become int8 ranges",
            "drop or fill those rows and pass --calibration again",
        )
    count = min(len(a) for a in arrays.values())
    mask = arrays.get("attention_mask")
    rows = []
    for i in range(min(count, MAX_CALIBRATION_ROWS)):
        row = {n: np.ascontiguousarray(a[i : i + 1]) for n, a in arrays.items()}
        if mask is not None and mask.ndim == 2 and mask[i].any():
            length = int(np.flatnonzero(mask[i])[-1]) + 1
            row = {n: np.ascontiguousarray(a[:, :length]) if a.shape == (1, mask.shape[1]) else a for n, a in row.items()}
        rows.append(row)
    if not rows:
        raise NotQuantizable("--quantize static: the calibration data has no rows", "pass --calibration FILE with rows")
    return rows


def _is_transformer(model: Any) -> bool:
    """An attention block: ScaledDotProductAttention (OpenVINO's PyTorch front end), or a Softmax fed by a MatMul of two
    activations (query x key, the ONNX export's decomposed attention)."""
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "ScaledDotProductAttention":
            return True
        if kind == "MatMul" and not any(_is_constant(op.input_value(i).get_node()) for i in range(2)):
            if _feeds_softmax(op, depth=4):
                return True
    return False


def _is_constant(node: Any) -> bool:
    """A Constant, possibly behind the Convert/Multiply/Subtract of compressed weights or a Transpose."""
    for _ in range(4):
        if node.get_type_name() == "Constant":
            return True
        if node.get_type_name() not in ("Convert", "Transpose", "Reshape", "Multiply", "Subtract"):
            return False
        node = node.input_value(0).get_node()
    return False


def _feeds_softmax(op: Any, depth: int) -> bool:
    """``op``'s output reaches a Softmax within ``depth`` operators (scale, mask Add, Reshape in between)."""
    frontier = [op]
    for _ in range(depth):
        frontier = [t.get_node() for node in frontier for out in node.outputs() for t in out.get_target_inputs()]
        if any(node.get_type_name() == "Softmax" for node in frontier):
            return True
    return False


def _outputs(core: Any, model: Any, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Every output of ``model`` at f32 for each row (the quantization's own comparison, before validation)."""
    import numpy as np

    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return [[np.array(v, dtype=np.float64) for v in request.infer(row).values()] for row in rows]


def _mean_error(reference: list[list[Any]], got: list[list[Any]]) -> float:
    """Mean over rows and outputs of the relative L2 error ||got - reference|| / ||reference||."""
    import numpy as np

    errors = [
        float(np.linalg.norm(g - r) / max(float(np.linalg.norm(r)), 1e-12))
        for ref_row, got_row in zip(reference, got, strict=True)
        for r, g in zip(ref_row, got_row, strict=True)
    ]
    return float(np.mean(errors)) if errors else 0.0


def _weight_types(model: Any) -> dict[str, int]:
    """How many constants of each element type the model holds (``u8`` ones are compressed weights)."""
    counts: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            name = op.get_output_element_type(0).get_type_name()
            counts[name] = counts.get(name, 0) + 1
    return counts


# ---------------------------------------------------------------- ai.onnx.ml -> standard ONNX


MAX_TREE_CELLS = 50_000_000  # trees x internal nodes x leaves of the padded path matrices (200 MB of float32)


def _rewrite_ml(proto: Any) -> Any:
    """The graph with each known ``ai.onnx.ml`` node replaced by standard operators computing the same outputs."""
    import onnx

    proto = _at_least_opset(proto, MIN_OPSET)
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    nodes, inits = [], []
    for index, node in enumerate(proto.graph.node):
        if node.domain == "ai.onnx.ml" and node.op_type in _REWRITES:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            new_nodes, new_inits = _REWRITES[node.op_type](node, attrs, f"ml{index}_", types.get(node.input[0], 1))
            nodes += new_nodes
            inits += new_inits
        else:
            nodes.append(node)
    graph = proto.graph
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    return proto


MIN_OPSET = 13  # the rewrites' standard operators take their axes as inputs (ReduceSum, Unsqueeze): opset 13 and later


def _at_least_opset(proto: Any, version: int) -> Any:
    """The graph at ``version`` of the standard domain or later, upgraded by ONNX's own version converter (the
    ``ai.onnx.ml`` nodes are left as they are). Measured: skl2onnx writes a binary SVC as opset 9 (its graph needs no
    more: SVMClassifier and a Cast), which the rewrites refused; a graph that declares no standard domain at all
    (CatBoost's exporter: ai.onnx.ml only) gets one."""
    import onnx
    from onnx import version_converter

    default = next((o for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if default is None:
        proto.opset_import.append(onnx.helper.make_opsetid("", version))
        return proto
    if default.version >= version:
        return proto
    try:
        return version_converter.convert_version(proto, version)
    except Exception as exc:  # the converter has no adapter for one of the graph's operators
        raise UnsupportedConversion(
            f"the ONNX graph uses opset {default.version} and ONNX's version converter cannot raise it to {version} "
            f"({type(exc).__name__}: {first_line(exc, 150)})",
            f"convert with --opset {version} or newer for OpenVINO",
        ) from exc


def _const(name: str, array: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(array, name)


def _post(kind: str, scores: str, out: str, p: str) -> list[Any]:
    from onnx import helper

    ops = {"NONE": "Identity", "LOGISTIC": "Sigmoid", "SOFTMAX": "Softmax"}
    if kind not in ops:
        raise UnsupportedConversion(f"post_transform {kind} has no OpenVINO rewrite", "keep --to onnx for this model")
    axis: dict[str, Any] = {"axis": 1} if kind == "SOFTMAX" else {}
    return [helper.make_node(ops[kind], [scores], [out], name=p + "post", **axis)]


def _labels(attrs: Mapping[str, Any], scores: str, out: str, p: str) -> tuple[list[Any], list[Any]]:
    import numpy as np
    from onnx import helper

    if "classlabels_strings" in attrs:
        raise UnsupportedConversion(
            "a classifier with string class labels has no OpenVINO rewrite", "keep --to onnx, or train on integer labels"
        )
    labels = np.asarray(attrs.get("classlabels_int64s") or attrs.get("classlabels_ints"), dtype=np.int64)
    nodes = [
        helper.make_node("ArgMax", [scores], [p + "arg"], axis=1, keepdims=0, name=p + "argmax"),
        helper.make_node("Gather", [p + "classes", p + "arg"], [out], axis=0, name=p + "label"),
    ]
    return nodes, [_const(p + "classes", labels)]


def _scaler(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    import numpy as np
    from onnx import helper

    offset = np.asarray(attrs.get("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(attrs.get("scale", [1.0]), dtype=np.float32)
    x = _as_float(node.input[0], p, dtype)
    nodes = [
        *x[0],
        helper.make_node("Sub", [x[1], p + "offset"], [p + "centred"]),
        helper.make_node("Mul", [p + "centred", p + "scale"], [node.output[0]]),
    ]
    return nodes, [_const(p + "offset", offset), _const(p + "scale", scale)]


def _as_float(name: str, p: str, dtype: int) -> tuple[list[Any], str]:
    from onnx import TensorProto, helper

    if dtype == TensorProto.FLOAT:
        return [], name
    return [helper.make_node("Cast", [name], [p + "x32"], to=TensorProto.FLOAT, name=p + "cast")], p + "x32"


def _linear_regressor(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    import numpy as np
    from onnx import helper

    targets = int(attrs.get("targets", 1))
    coef = np.asarray(attrs["coefficients"], dtype=np.float32).reshape(targets, -1).T
    intercept = np.asarray(attrs.get("intercepts", [0.0] * targets), dtype=np.float32)
    cast, x = _as_float(node.input[0], p, dtype)
    nodes = [*cast, helper.make_node("MatMul", [x, p + "coef"], [p + "mm"]), helper.make_node("Add", [p + "mm", p + "b"], [p + "raw"])]
    nodes += _post(attrs.get("post_transform", b"NONE").decode(), p + "raw", node.output[0], p)
    return nodes, [_const(p + "coef", coef), _const(p + "b", intercept)]


def _linear_classifier(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    """ONNX Runtime's semantics: one row of coefficients with two labels is the binary case, scores ``[-s, s]``."""
    import numpy as np
    from onnx import helper

    labels = list(attrs.get("classlabels_int64s") or attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or ())
    intercept = np.asarray(attrs.get("intercepts"), dtype=np.float32)
    coef = np.asarray(attrs["coefficients"], dtype=np.float32).reshape(len(intercept), -1)
    if len(intercept) == 1 and len(labels) == 2:
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    cast, x = _as_float(node.input[0], p, dtype)
    nodes = [*cast, helper.make_node("MatMul", [x, p + "coef"], [p + "mm"]), helper.make_node("Add", [p + "mm", p + "b"], [p + "raw"])]
    nodes += _post(attrs.get("post_transform", b"NONE").decode(), p + "raw", node.output[1], p)
    label_nodes, label_inits = _labels(attrs, p + "raw", node.output[0], p)
    return nodes + label_nodes, [_const(p + "coef", coef.T.copy()), _const(p + "b", intercept), *label_inits]


def _tree_regressor(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    targets = int(attrs.get("n_targets", 1))
    weights = ("target_treeids", "target_nodeids", "target_ids", "target_weights")
    nodes, inits = _trees(node.input[0], attrs, weights, targets, p, dtype)
    return nodes + _post(attrs.get("post_transform", b"NONE").decode(), p + "raw", node.output[0], p), inits


def _tree_classifier(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    """ONNX Runtime's binary case (two labels, weights for one class only): scores ``[1 - s, s]`` when every weight is
    non-negative, else ``[-s, s]`` before the transform."""
    import numpy as np

    labels = list(attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or ())
    ids = set(attrs["class_ids"])
    binary = len(labels) == 2 and len(ids) == 1
    post = attrs.get("post_transform", b"NONE").decode()
    # ONNX Runtime's binary case has two forms: weights all >= 0 (a forest's leaf probabilities of class 1) give
    # [1 - s, s]; mixed weights (boosted margins) give [-s, s] before the transform. Only the second was rewritten: a
    # scaled binary RandomForest on breast cancer came out [-p, p], 59.5% label agreement (validation refused it).
    positive = binary and bool(np.all(np.asarray(_numbers(attrs, "class_weights"), dtype=np.float64) >= 0))
    if positive and post != "NONE":
        raise UnsupportedConversion(
            f"a binary tree ensemble with non-negative weights and a {post} transform has no OpenVINO rewrite",
            "keep --to onnx for this model",
        )
    weights = ("class_treeids", "class_nodeids", "class_ids", "class_weights")
    nodes, inits = _trees(
        node.input[0],
        attrs,
        weights,
        1 if binary else len(labels),
        p,
        dtype,
        binary="probability" if positive else "margin" if binary else "",
    )
    nodes += _post(post, p + "raw", node.output[1], p)
    label_nodes, label_inits = _labels(attrs, p + "raw", node.output[0], p)
    return nodes + label_nodes, inits + label_inits


def _trees(x_in: str, attrs: Mapping[str, Any], keys: tuple[str, ...], width: int, p: str, dtype: int, binary: str = ""):
    """The GEMM form of a tree ensemble: ``raw`` (N, width) = sum over trees of the reached leaf's values + base.
    ``binary``: "" (one column per class or target), "margin" (scores [-s, s]) or "probability" (scores [1 - s, s])."""
    import numpy as np
    from onnx import helper

    modes = {m.decode() if isinstance(m, bytes) else m for m in attrs["nodes_modes"]} - {"LEAF"}
    compare = {"BRANCH_LEQ": "LessOrEqual", "BRANCH_LT": "Less", "BRANCH_GTE": "GreaterOrEqual", "BRANCH_GT": "Greater"}
    if len(modes) > 1 or not modes <= set(compare):
        raise UnsupportedConversion(f"tree split modes {sorted(modes)} have no OpenVINO rewrite", "keep --to onnx for this model")
    mode = modes.pop() if modes else "BRANCH_LEQ"
    if attrs.get("aggregate_function", b"SUM") not in (b"SUM", b"AVERAGE", "SUM", "AVERAGE"):
        raise UnsupportedConversion(f"aggregate {attrs['aggregate_function']!r} has no OpenVINO rewrite", "keep --to onnx for this model")
    values = _numbers(attrs, "nodes_values")
    tree_ids, node_ids = list(attrs["nodes_treeids"]), list(attrs["nodes_nodeids"])
    node_modes = [m.decode() if isinstance(m, bytes) else m for m in attrs["nodes_modes"]]
    true_ids, false_ids, features = attrs["nodes_truenodeids"], attrs["nodes_falsenodeids"], attrs["nodes_featureids"]
    missing = list(attrs.get("nodes_missing_value_tracks_true") or [0] * len(tree_ids))
    trees = sorted(set(tree_ids))
    at = {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids, strict=True))}
    internal: dict[int, list[int]] = {t: [] for t in trees}
    leaves: dict[int, list[int]] = {t: [] for t in trees}
    for i, t in enumerate(tree_ids):
        (leaves if node_modes[i] == "LEAF" else internal)[t].append(i)
    n_int, n_leaf = max(1, max(len(v) for v in internal.values())), max(len(v) for v in leaves.values())
    if len(trees) * n_int * n_leaf > MAX_TREE_CELLS:
        raise UnsupportedConversion(
            f"{len(trees)} trees of up to {n_leaf} leaves are too large for the OpenVINO GEMM rewrite", "keep --to onnx for this model"
        )
    feature = np.zeros((len(trees), n_int), dtype=np.int64)
    threshold = np.zeros((len(trees), n_int), dtype=np.float64)
    tracks = np.zeros((len(trees), n_int), dtype=bool)
    path = np.zeros((len(trees), n_int, n_leaf), dtype=np.float32)
    depth = np.full((len(trees), 1, n_leaf), 1e9, dtype=np.float32)  # padding leaves are never reached
    leaf_values = np.zeros((len(trees), n_leaf, width), dtype=np.float32)
    column: dict[int, int] = {}
    for ti, t in enumerate(trees):
        for k, i in enumerate(internal[t]):
            feature[ti, k], threshold[ti, k], tracks[ti, k] = features[i], values[i], bool(missing[i])
        for k, i in enumerate(leaves[t]):
            column[i] = k
        root = at[(t, 0)] if (t, 0) in at else min(internal[t] + leaves[t])
        stack: list[tuple[int, list[tuple[int, float]]]] = [(root, [])]
        while stack:
            i, ancestors = stack.pop()
            if node_modes[i] == "LEAF":
                for k_int, sign in ancestors:
                    path[ti, k_int, column[i]] = sign
                depth[ti, 0, column[i]] = sum(1 for _, s in ancestors if s > 0)
                continue
            k_int = internal[t].index(i)
            stack.append((at[(t, true_ids[i])], [*ancestors, (k_int, 1.0)]))
            stack.append((at[(t, false_ids[i])], [*ancestors, (k_int, -1.0)]))
    w_tree, w_node, w_id = (list(attrs[k]) for k in keys[:3])
    w_value = list(_numbers(attrs, keys[3]))
    index_of = {t: ti for ti, t in enumerate(trees)}
    for t, n, target, w in zip(w_tree, w_node, w_id, w_value, strict=True):
        leaf_values[index_of[t], column[at[(t, n)]], 0 if binary else target] += w
    if attrs.get("aggregate_function") in (b"AVERAGE", "AVERAGE"):
        leaf_values /= len(trees)
    base = np.asarray(_numbers(attrs, "base_values", [0.0] * width), dtype=np.float32)[:width]
    float_type = {1: np.float32, 11: np.float64}.get(dtype, np.float32)
    T, N = len(trees), p + "n"
    nodes = [
        helper.make_node("Gather", [x_in, p + "feature"], [p + "xg"], axis=1),  # (N, T*I): NaN stays in its own column
        helper.make_node(compare[mode], [p + "xg", p + "threshold"], [p + "cmp"]),
        helper.make_node("IsNaN", [p + "xg"], [p + "nan"]),
        helper.make_node("And", [p + "nan", p + "tracks"], [p + "nan_true"]),
        helper.make_node("Or", [p + "cmp", p + "nan_true"], [p + "go"]),
        helper.make_node("Cast", [p + "go"], [p + "go_f"], to=1),
        helper.make_node("Reshape", [p + "go_f", p + "shape_nti"], [p + "nti"]),
        helper.make_node("Transpose", [p + "nti"], [p + "tni"], perm=[1, 0, 2]),
        helper.make_node("MatMul", [p + "tni", p + "path"], [p + "sums"]),  # (T, N, L)
        helper.make_node("Equal", [p + "sums", p + "depth"], [p + "hit"]),
        helper.make_node("Cast", [p + "hit"], [p + "hit_f"], to=1),
        helper.make_node("Transpose", [p + "hit_f"], [p + "nt_l"], perm=[1, 0, 2]),
        helper.make_node("Reshape", [p + "nt_l", p + "shape_ntl"], [p + "flat"]),
        helper.make_node("MatMul", [p + "flat", p + "leaf"], [p + "sum"]),
        helper.make_node("Add", [p + "sum", p + "base"], [p + "raw1" if binary else p + "raw"]),
    ]
    inits = [
        _const(p + "feature", feature.reshape(-1)),
        _const(p + "threshold", threshold.reshape(-1).astype(float_type)),
        _const(p + "tracks", tracks.reshape(-1)),
        _const(p + "shape_nti", np.asarray([-1, T, n_int], dtype=np.int64)),
        _const(p + "path", path),
        _const(p + "depth", depth),
        _const(p + "shape_ntl", np.asarray([-1, T * n_leaf], dtype=np.int64)),
        _const(p + "leaf", leaf_values.reshape(T * n_leaf, width)),
        _const(p + "base", base),
    ]
    del N
    if binary == "margin":  # ONNX Runtime: the one score s becomes [-s, s] (then the transform: sigmoid gives [1-p, p])
        nodes += [
            helper.make_node("Neg", [p + "raw1"], [p + "neg"]),
            helper.make_node("Concat", [p + "neg", p + "raw1"], [p + "raw"], axis=1),
        ]
    elif binary == "probability":  # weights all >= 0: the score s is P(class 1), ONNX Runtime writes [1 - s, s]
        nodes += [
            helper.make_node("Sub", [p + "one", p + "raw1"], [p + "neg"]),
            helper.make_node("Concat", [p + "neg", p + "raw1"], [p + "raw"], axis=1),
        ]
        inits.append(_const(p + "one", np.asarray([1.0], dtype=float_type)))
    return nodes, inits


def _numbers(attrs: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A float attribute, or its ``_as_tensor`` twin (LightGBM's converter writes double thresholds and weights there)."""
    from onnx import numpy_helper

    if key in attrs and len(attrs[key]):
        return attrs[key]
    if key + "_as_tensor" in attrs:
        return numpy_helper.to_array(attrs[key + "_as_tensor"])
    if default is None:
        raise UnsupportedConversion(f"the tree ensemble has no {key}", "keep --to onnx for this model")
    return default


def _array_feature_extractor(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    """``ArrayFeatureExtractor(X, indices)`` picks columns of the last axis: ``Gather(axis=-1)`` (skl2onnx uses it on
    the SVC's pairwise scores and to map an index to its class)."""
    import numpy as np
    from onnx import helper

    # the indices flattened: ONNX Runtime gives the last axis one entry per index, a scalar index included
    nodes = [
        helper.make_node("Reshape", [node.input[1], p + "flat"], [p + "indices"], name=p + "flatten"),
        helper.make_node("Gather", [node.input[0], p + "indices"], [node.output[0]], axis=-1, name=p + "gather"),
    ]
    return nodes, [_const(p + "flat", np.asarray([-1], np.int64))]


def _svm_classifier(node: Any, attrs: Mapping[str, Any], p: str, dtype: int) -> tuple[list[Any], list[Any]]:
    """ONNX Runtime's SVMClassifier (one-vs-one, libsvm's layout) in standard operators: the kernel against every
    support vector, then for each class pair (i, j) ``dec = sum_i coef[j-1] K + sum_j coef[i] K + rho``; a pair votes
    for i when dec > 0, else for j, and the label is the first class with the most votes. Scores: the pairwise values
    (two classes: ``[-dec, dec]``). Probabilities (Platt scaling, ``prob_a``) and a linear-SVC layout without support
    vectors have no rewrite and are refused."""
    import numpy as np
    from onnx import helper

    if attrs.get("prob_a") or attrs.get("post_transform", b"NONE").decode() != "NONE" or not attrs.get("vectors_per_class"):
        raise UnsupportedConversion(
            "an SVC with probability=True (Platt scaling) or without support vectors has no OpenVINO rewrite", "keep --to onnx"
        )
    per_class = [int(v) for v in attrs["vectors_per_class"]]
    classes, vectors = len(per_class), int(sum(per_class))
    raw_sv, raw_coef, rho = (np.asarray(attrs.get(k, []), dtype=np.float32) for k in ("support_vectors", "coefficients", "rho"))
    labels = attrs.get("classlabels_ints") or attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or ()
    pair_count = classes * (classes - 1) // 2
    # the attributes come from the file (an ONNX file is a source): sizes that disagree are a malformed graph, and the
    # pair weights (vectors x pairs) are capped as the tree matrices are
    if (
        classes < 2
        or min(per_class) < 0
        or vectors == 0
        or raw_sv.size % vectors
        or raw_coef.size != (classes - 1) * vectors
        or rho.size != pair_count
        or len(labels) != classes
    ):
        raise InputFileError(
            "the ONNX graph's SVMClassifier attributes disagree in size (support vectors, coefficients, rho, classes)",
            "re-export the model; keep --to onnx if onnxruntime runs it",
        )
    if vectors * pair_count > MAX_TREE_CELLS:
        raise UnsupportedConversion(
            f"an SVC with {vectors} support vectors and {classes} classes is too large for the OpenVINO rewrite", "keep --to onnx"
        )
    sv, coef = raw_sv.reshape(vectors, -1), raw_coef.reshape(classes - 1, vectors)
    start = np.concatenate([[0], np.cumsum(per_class)[:-1]])
    pairs = [(i, j) for i in range(classes) for j in range(i + 1, classes)]
    weights = np.zeros((vectors, len(pairs)), dtype=np.float32)
    votes_i, votes_j = np.zeros((len(pairs), classes), np.float32), np.zeros((len(pairs), classes), np.float32)
    for k, (i, j) in enumerate(pairs):
        weights[start[i] : start[i] + per_class[i], k] = coef[j - 1, start[i] : start[i] + per_class[i]]
        weights[start[j] : start[j] + per_class[j], k] = coef[i, start[j] : start[j] + per_class[j]]
        votes_i[k, i], votes_j[k, j] = 1.0, 1.0
    gamma, coef0, degree = (float(v) for v in (list(attrs.get("kernel_params", [])) + [0.0, 0.0, 3.0])[:3])
    kernel = attrs.get("kernel_type", b"LINEAR").decode()
    cast, x = _as_float(node.input[0], p, dtype)
    nodes = [*cast]
    if kernel == "RBF":  # exp(-gamma |x - sv|^2), the differences summed (not |x|^2 + |sv|^2 - 2 x.sv: cancellation)
        nodes += [
            helper.make_node("Unsqueeze", [x, p + "axis1"], [p + "x3"]),
            helper.make_node("Sub", [p + "x3", p + "sv3"], [p + "diff"]),
            helper.make_node("Mul", [p + "diff", p + "diff"], [p + "sq"]),
            helper.make_node("ReduceSum", [p + "sq", p + "axis2"], [p + "d2"], keepdims=0),
            helper.make_node("Mul", [p + "d2", p + "neg_gamma"], [p + "exponent"]),
            helper.make_node("Exp", [p + "exponent"], [p + "k"]),
        ]
    elif kernel in ("LINEAR", "POLY", "SIGMOID"):
        nodes.append(helper.make_node("MatMul", [x, p + "svT"], [p + "dot"]))
        if kernel == "LINEAR":
            nodes.append(helper.make_node("Identity", [p + "dot"], [p + "k"]))
        else:
            nodes += [
                helper.make_node("Mul", [p + "dot", p + "gamma"], [p + "g"]),
                helper.make_node("Add", [p + "g", p + "coef0"], [p + "a"]),
            ]
            last = (
                helper.make_node("Pow", [p + "a", p + "degree"], [p + "k"])
                if kernel == "POLY"
                else helper.make_node("Tanh", [p + "a"], [p + "k"])
            )
            nodes.append(last)
    else:
        raise UnsupportedConversion(f"SVM kernel {kernel} has no OpenVINO rewrite", "keep --to onnx for this model")
    nodes += [
        helper.make_node("MatMul", [p + "k", p + "w"], [p + "mm"]),
        helper.make_node("Add", [p + "mm", p + "rho"], [p + "dec"]),
        helper.make_node("Greater", [p + "dec", p + "zero"], [p + "pos"]),
        helper.make_node("Cast", [p + "pos"], [p + "posf"], to=1),
        helper.make_node("Sub", [p + "one", p + "posf"], [p + "negf"]),
        helper.make_node("MatMul", [p + "posf", p + "vi"], [p + "for_i"]),
        helper.make_node("MatMul", [p + "negf", p + "vj"], [p + "for_j"]),
        helper.make_node("Add", [p + "for_i", p + "for_j"], [p + "votes"]),
    ]
    if classes == 2:
        nodes += [
            helper.make_node("Neg", [p + "dec"], [p + "negdec"]),
            helper.make_node("Concat", [p + "negdec", p + "dec"], [node.output[1]], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", [p + "dec"], [node.output[1]]))
    label_nodes, label_inits = _labels(attrs, p + "votes", node.output[0], p)
    constants = {
        "axis1": np.asarray([1], np.int64),
        "axis2": np.asarray([2], np.int64),
        "sv3": sv[None],
        "svT": sv.T.copy(),
        "neg_gamma": np.asarray(-gamma, np.float32),
        "gamma": np.asarray(gamma, np.float32),
        "coef0": np.asarray(coef0, np.float32),
        "degree": np.asarray(degree, np.float32),
    }
    used = {name for n in nodes for name in n.input}
    inits = [
        *(_const(p + name, value) for name, value in constants.items() if p + name in used),  # this kernel's only
        _const(p + "w", weights),
        _const(p + "rho", rho),
        _const(p + "zero", np.asarray(0.0, np.float32)),
        _const(p + "one", np.asarray(1.0, np.float32)),
        _const(p + "vi", votes_i),
        _const(p + "vj", votes_j),
    ]
    return nodes + label_nodes, inits + label_inits


_REWRITES = {
    "ArrayFeatureExtractor": _array_feature_extractor,
    "SVMClassifier": _svm_classifier,
    "Scaler": _scaler,
    "LinearRegressor": _linear_regressor,
    "LinearClassifier": _linear_classifier,
    "TreeEnsembleRegressor": _tree_regressor,
    "TreeEnsembleClassifier": _tree_classifier,
}


# ---------------------------------------------------------------- the edge Hugging Face -> OpenVINO (PyTorch front end)

# A direct edge: ``packager.graph`` takes the direct edge from a source over any longer path, so a Hugging Face folder
# reaches OpenVINO here and no longer through its ONNX export (huggingface -> onnx -> openvino stays the fallback below).
ATTENTION = "ScaledDotProductAttention"


@converts(
    "huggingface",
    to="openvino",
    quantize=set(QUANTIZE_MODES),
    note="openvino.convert_model on the loaded torch module (PyTorch front end: attention stays one "
    "ScaledDotProductAttention), dynamic batch and sequence; the ONNX route when the front end refuses the module; "
    "tokenizer + preprocessing packaged",
)
def hf_to_openvino(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
    """Why not through ONNX: the ONNX export decomposes each attention block (MiniLM: 48 MatMul + 6 Softmax in the IR),
    OpenVINO's PyTorch front end keeps it as one ``ScaledDotProductAttention`` (36 MatMul), which the CPU plugin runs as
    one fused kernel. Measured on all-MiniLM-L6-v2 (benchmarks/results/optimize.md): with both IRs at f32, the front
    end's is 0.94-1.02x the time of the one converted from ONNX, and the peers a user would build this way were up to
    1.10x faster than packager's choice at batch 32.

    What runs: nothing is loaded here. ``model`` is the ``TextModel`` the huggingface plugin already loaded (checked folder,
    offline, remote code only with --trust); ``convert_model`` traces ``model.module`` (packager's wrapper around it) with
    ``torch.jit.trace(strict=False)`` on the first validation rows (``options.example``): the tracer runs the module's
    ``forward`` on those token tensors (3 calls, counted: the trace and torch's re-runs to check it), the same code
    validation runs on the source, in the same process (the sandbox child unless --trust). Nothing is scripted
    (``torch.jit.script`` only runs without an example input) and nothing is read from the folder again.

    Each input's shape comes from the signature (None -> a dynamic dimension), so any batch and length runs; an IR
    whose inputs came out static where the signature is dynamic is refused rather than packaged."""
    from packager.errors import PackagerError

    from .huggingface_package import write_text_files

    ov = _ov()
    require("torch", "torch", "OpenVINO's PyTorch front end")
    try:
        converted = _from_torch(ov, model, signature, options)
    except Exception as exc:  # the front end cannot take this module (an operator it lacks, a graph it cannot trace)
        missing = re.findall(r"No conversion rule found for operations: ([^\n]+)", str(exc))
        reason = f"no conversion rule for {missing[0].strip()}" if missing else f"{type(exc).__name__}: {first_line(exc, 200)}"
        try:
            artifact = _through_onnx(model, signature, out, options)
        except PackagerError as onnx_exc:
            onnx_exc.what = f"OpenVINO's PyTorch front end failed ({reason}), and so did the ONNX route: {onnx_exc.what}"
            onnx_exc.args = (f"{onnx_exc.what}. {onnx_exc.hint}" if onnx_exc.hint else onnx_exc.what,)
            raise
        return Artifact(artifact.path, {**artifact.details, "front_end": "onnx (the PyTorch front end failed)", "front_end_error": reason})
    folder = Path(out) / FOLDER
    folder.mkdir()
    ov.save_model(converted, str(folder / XML), compress_to_fp16=False)  # fp32: save_model's fp16 default is a quantization
    counts: dict[str, int] = {}
    for op in converted.get_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    details = {
        "openvino": ov.__version__,
        "front_end": "pytorch (torch.jit.trace)",
        "operations": {name: counts.get(name, 0) for name in (ATTENTION, "MatMul", "Softmax")},
    }
    return Artifact(folder, {**details, **write_text_files(model, out)})


def _from_torch(ov: Any, model: Any, signature: Any, options: ConvertOptions) -> Any:
    """The module through OpenVINO's PyTorch front end, its inputs and outputs named as the signature and the
    preprocessing say (the front end names them after the traced graph's values: ``input.1``, ``attention_mask.1``)."""
    from packager.deps import quiet_output

    from .huggingface_export import example_inputs

    torch = require("torch", "torch", "OpenVINO's PyTorch front end")
    specs = list(signature.inputs)
    types = {"int64": ov.Type.i64, "int32": ov.Type.i32, "float32": ov.Type.f32}
    shapes = [(ov.PartialShape([-1 if d is None else int(d) for d in spec.shape]), types[spec.dtype]) for spec in specs]
    with quiet_output(), torch.no_grad():  # the tracer's TracerWarnings and transformers' notices
        converted = ov.convert_model(model.module, example_input=example_inputs(model, options), input=shapes)
    for port, spec in zip(converted.inputs, specs, strict=True):
        port.get_tensor().set_names({spec.name})
        dims = port.get_partial_shape()
        static = [i for i, d in enumerate(spec.shape) if d is None and dims[i].is_static]
        if static:
            raise ConversionError(f"the PyTorch front end fixed dimensions {static} of input {spec.name}", "use the ONNX route")
    for port, name in zip(converted.outputs, model.preprocessing.outputs, strict=True):
        port.get_tensor().set_names({name})
    return converted


def _through_onnx(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
    """The route a Hugging Face folder took before this edge: its ONNX export (``hf_to_onnx``, which also packages the
    tokenizer and preprocessing), then ``onnx_to_openvino``, the intermediate file removed. Only the last step
    quantizes (the pipeline does, after this edge returns), as ``packager.graph.run_route`` does for a chain."""
    import shutil
    from dataclasses import replace

    from .huggingface import hf_to_onnx

    hop = Path(out) / ".onnx-hop"
    hop.mkdir()
    try:
        exported = hf_to_onnx(model, signature, hop, replace(options, quantize=None))
        artifact = onnx_to_openvino(Path(exported.path), signature, out, options)
        for member in hop.iterdir():  # tokenizer.json, preprocessing.json...: they describe the model, not the file
            if not member.name.startswith(Path(exported.path).name):
                shutil.move(str(member), str(Path(out) / member.name))
    finally:
        shutil.rmtree(hop, ignore_errors=True)
    details = {k: v for k, v in exported.details.items() if k not in ("quantization", "quantized_in_conversion")}
    return Artifact(artifact.path, {**details, **artifact.details, "via": "onnx"})
