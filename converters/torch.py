"""PyTorch: an nn.Module (Python API), a TorchScript .pt or a torch.export .pt2 to TorchScript,
ONNX, .pt2 and Core ML; TorchScript dynamic int8 (Linear/LSTM/GRU) while tracing.

Files are safety-checked before torch opens them (packager.safety.torch); state dicts need the
model's class, which the CLI does not take yet (refused with a clear message).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Mapping

from packager.deps import Runtime, require, version_of
from packager.errors import ConversionError, UnsupportedConversion, UsageError
from packager.plugins import converts, framework, runs
from packager.signature import Signature, TensorSpec

SHAPE_HINT = "a torch model carries no input shapes: give --sample FILE (.npy, or .npz with one array per input) or --input-shape 1,3,32,32"


def _torch():
    return require("torch", "torch", "PyTorch models")


@framework("torch")
class Torch:
    """The PyTorch source framework (modules are put in eval mode: BatchNorm/Dropout as at inference)."""

    file_formats = frozenset({"torchscript", "pt2", "torch"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return any(c.__module__.startswith("torch.") and c.__name__ in ("Module", "ScriptModule") for c in type(obj).__mro__)

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        torch = _torch()
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()
        if fmt == "pt2":
            return torch.export.load(str(path)).module()
        raise UsageError(f"{path.name} is a state dict (weights without code)", "load it into your nn.Module and use the Python API: packager.convert(module, to=..., sample=...)")

    def describe(self, model: Any) -> dict[str, Any]:
        parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
        return {"module": type(model).__name__, "parameters": parameters}

    def versions(self) -> dict[str, str]:
        return {"torch": version_of("torch")}

    def label_outputs(self, model: Any) -> set[str]:
        return set()

    def signature(self, model: Any, sample: Any) -> Signature:
        if sample is None:
            raise UsageError("no sample inputs", SHAPE_HINT)
        feeds = _as_feeds(sample)
        return Signature(tuple(TensorSpec(name, str(array.dtype), (None, *array.shape[1:])) for name, array in feeds.items()))

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        if sample is None:
            raise UsageError("no sample inputs", SHAPE_HINT)
        feeds = _as_feeds(sample)
        if list(feeds) != signature.input_names and len(feeds) == len(signature.inputs):
            feeds = dict(zip(signature.input_names, feeds.values()))
        return feeds

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch = _torch()
        if hasattr(model, "eval"):
            model.eval()
        with torch.no_grad():
            return outputs_dict(model(*_tensors(feeds, signature.input_names)))


def _as_feeds(sample: Any) -> dict[str, Any]:
    import numpy as np

    if hasattr(sample, "detach"):
        sample = sample.detach().cpu().numpy()
    if isinstance(sample, dict):
        items = {str(k): (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in sample.items()}
    elif isinstance(sample, (tuple, list)):
        items = {f"input_{i}": (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for i, v in enumerate(sample)}
    elif hasattr(sample, "to_numpy"):
        items = {"input_0": sample.to_numpy()}
    else:
        items = {"input_0": np.asarray(sample)}
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in items.items()}


def _tensors(feeds: Mapping[str, Any], names: list[str]) -> list[Any]:
    import numpy as np

    torch = _torch()
    return [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]


def outputs_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return {str(k): v.detach().cpu().numpy() for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        return {f"output_{i}": v.detach().cpu().numpy() for i, v in enumerate(result)}
    return {"output_0": result.detach().cpu().numpy()}


def _example(signature: Signature, options) -> tuple:
    return tuple(_tensors(options.example, signature.input_names))


def _saved_size(module: Any) -> int:
    torch = _torch()
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.tell()


# ---------------------------------------------------------------- conversions

@converts("torch", to="torchscript", quantize={"dynamic"}, note="torch.jit.trace; dynamic int8 for Linear/LSTM/GRU")
def torch_to_torchscript(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    torch = _torch()
    example = _example(signature, options)
    try:
        traced = _trace(model, example)
        details: dict[str, Any] = {"method": "trace", "torch": version_of("torch")}
        if options.quantize == "dynamic":
            if isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "named_modules"):
                raise UnsupportedConversion("dynamic int8 needs the Python nn.Module, not a TorchScript or exported program", "pass the module through the Python API")
            quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)
            details["quantized_in_conversion"] = {"mode": "dynamic", "size_before": _saved_size(traced), "layers": "Linear, LSTM, GRU"}
            traced = _trace(quantized, example)
        path = out / "model.pt"
        torch.jit.save(traced, str(path))
    except (UnsupportedConversion, UsageError):
        raise
    except Exception as exc:
        raise ConversionError(f"torch.jit.trace failed on {type(model).__name__}: {str(exc).splitlines()[0][:200]}", "make forward() traceable (no data-dependent Python control flow)") from exc
    return Artifact(path, details)


def _trace(model: Any, example: tuple) -> Any:
    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule):
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model.eval(), example, check_trace=False)


@converts("torch", to="onnx", quantize={"dynamic", "static", "fp16"}, note="torch.onnx dynamo exporter, TorchScript exporter as fallback")
def torch_to_onnx(model: Any, signature: Signature, out: Path, options) -> Any:
    """Dynamic batch axis; the exporter actually used is recorded (dynamo first, TorchScript-based on failure)."""
    from packager.conversion import Artifact

    torch = _torch()
    example = _example(signature, options)
    path = out / "model.onnx"
    names = signature.input_names
    outputs = list(outputs_dict(model(*example)).keys()) if not isinstance(model, torch.jit.ScriptModule) else None
    dynamic_axes = {n: {0: "batch"} for n in names}
    failures = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = {"input_names": names, "output_names": outputs, "opset_version": options.opset, "dynamo": dynamo}
                if dynamo:
                    batch = torch.export.Dim("batch", min=1, max=1 << 20)
                    kwargs["dynamic_shapes"] = tuple({0: batch} for _ in names)
                    kwargs["external_data"] = False
                else:
                    kwargs["dynamic_axes"] = dynamic_axes
                torch.onnx.export(model, example, str(path), **kwargs)
            break
        except Exception as exc:
            failures.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            path.unlink(missing_ok=True)
    else:
        raise ConversionError(f"torch.onnx.export failed with both exporters ({'; '.join(failures)})", "check that forward() is exportable, or try another --opset")
    onnx = require("onnx", "torch", "ONNX export")
    proto = onnx.load(str(path))
    return Artifact(path, {"exporter": "dynamo" if not failures else "torchscript (dynamo failed)", "dynamo_error": failures[0] if failures else None,
                           "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import}, "ir_version": proto.ir_version, "torch": version_of("torch")})


def _quiet():
    """The dynamo exporter and coremltools print progress to stdout."""
    import contextlib

    return contextlib.redirect_stdout(io.StringIO())


@converts("torch", to="pt2", note="torch.export with a dynamic batch axis")
def torch_to_pt2(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedConversion("torch.export cannot export a TorchScript module", "pass the Python nn.Module through the API")
    example = _example(signature, options)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(model.eval(), example, dynamic_shapes=tuple({0: batch} for _ in example))
                dynamic = True
            except Exception:
                program = torch.export.export(model.eval(), example)
                dynamic = False
        path = out / "model.pt2"
        torch.export.save(program, str(path))
    except Exception as exc:
        raise ConversionError(f"torch.export failed on {type(model).__name__}: {str(exc).splitlines()[0][:200]}", "see torch.export's documentation on graph breaks") from exc
    return Artifact(path, {"dynamic_batch": dynamic, "torch": version_of("torch")})


@converts("torch", to="coreml", note="coremltools from a traced module (.mlmodel, neuralnetwork)")
def torch_to_coreml(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.conversion import Artifact

    ct = require("coremltools", "coreml", "Core ML export")
    example = _example(signature, options)
    traced = _trace(model, example)
    inputs = [ct.TensorType(name=s.name, shape=(ct.RangeDim(1, 4096), *s.shape[1:])) for s in signature.inputs]
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(traced, inputs=inputs, convert_to="neuralnetwork")
    except Exception as exc:
        raise ConversionError(f"coremltools cannot convert {type(model).__name__}: {str(exc).splitlines()[0][:200]}", "use --to onnx") from exc
    path = out / "model.mlmodel"
    mlmodel.save(str(path))
    return Artifact(path, {"converter": "coremltools", "converter_version": version_of("coremltools")})


# ---------------------------------------------------------------- runtimes

class _TorchRuntime(Runtime):
    distribution = "torch"

    def predict(self, module: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch = _torch()
        with torch.no_grad():
            produced = outputs_dict(module(*_tensors(feeds, signature.input_names)))
        return dict(zip(signature.output_names, produced.values())) if signature.outputs else produced


@runs("torchscript")
class TorchScriptRuntime(_TorchRuntime):
    name = "torch.jit"

    def load(self, path: Path, *, trust: bool = False) -> Any:
        return _torch().jit.load(str(path), map_location="cpu").eval()


@runs("pt2")
class ExportedProgramRuntime(_TorchRuntime):
    name = "torch.export"

    def load(self, path: Path, *, trust: bool = False) -> Any:
        return _torch().export.load(str(path)).module()
