"""PyTorch: an nn.Module (Python API), a TorchScript .pt, a torch.export .pt2, or a state dict plus
its class (``--model-class module:Class``) to TorchScript (traced, or scripted on request; dynamic
int8 for Linear/LSTM/GRU, static int8 through FX), ONNX, .pt2 and Core ML (.mlmodel, .mlpackage).

Files are safety-checked before torch opens them (packager.safety.torch); state dicts are read with
``torch.load(weights_only=True)``. Axes marked dynamic in the signature (the batch, and any
``--dynamic-axes``) stay dynamic in every export that can express them.

Over 500 lines, for a reason: three formats (torch.save, TorchScript, torch.export) share one loader, one example-input
builder and one output flattening, which every exporter here calls; splitting them by format would make each part
import the others' internals. (Not split in issue 22: a candidate for ``torch_export.py`` / ``torch_formats.py``.)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework, Runtime
from packager.deps import quiet_output, require, version_of
from packager.errors import ConversionError, UnsupportedConversion, UsageError, first_line
from packager.plugins import converts, framework, runs
from packager.signature import Signature, TensorSpec
from packager.validation import INT8, INT8_STATIC, SAME_KERNELS, criteria_table

from .shared import trace_torch

SHAPE_HINT = "a torch model carries no input shapes: give --sample FILE (.npy, or .npz with one array per input) or --input-shape 1,3,32,32"


def _torch():
    return require("torch", "torch", "PyTorch models")


@framework("torch")
class Torch(Framework):
    """The PyTorch source framework (modules are put in eval mode: BatchNorm/Dropout as at inference)."""

    file_formats = frozenset({"torchscript", "pt2", "torch", "safetensors"})
    takes_model_class = True

    @staticmethod
    def claims(obj: Any) -> bool:
        return any(c.__module__.startswith("torch.") and c.__name__ in ("Module", "ScriptModule") for c in type(obj).__mro__)

    def load(self, path: Path, fmt: str, *, trust: bool = False, model_class: str | None = None) -> Any:
        _torch()  # the extra to install, before anything else is said about the file
        if model_class and fmt not in ("torch", "safetensors"):
            raise UsageError(f"--model-class does not apply to {path.name} ({fmt}: it carries its own code)", "drop --model-class")
        if fmt == "torchscript":
            return load_torchscript(path, trust=trust)
        if fmt == "pt2":
            return exported_module(load_program(path, trust=trust))
        if not model_class:
            raise UsageError(
                f"{path.name} is a state dict (weights without code)",
                "give the class to load it into: --model-class my_package.models:MyNet (or load it yourself and use the Python API)",
            )
        return load_state_dict(path, model_class)

    def describe(self, model: Any) -> dict[str, Any]:
        parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
        return {"module": type(model).__name__, "parameters": parameters}

    def versions(self) -> dict[str, str]:
        return {"torch": version_of("torch")}

    def limit_threads(self, threads: int | None) -> None:
        limit_torch_threads(threads)

    def label_outputs(self, model: Any) -> set[str]:
        return set()

    def output_kinds(self, model: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
        """A Sequential (nn.Module or traced) whose last layer is Sigmoid or Softmax gives probabilities; elsewhere the
        order of a module's children says nothing about its forward pass, so the values decide."""
        from packager.validation import OutputKind

        children = list(model.children()) if hasattr(model, "children") else []
        sequential = "Sequential" in (type(model).__name__, getattr(model, "original_name", ""))
        if len(expected) != 1 or not sequential or not children:
            return {}
        last = children[-1]
        name = getattr(last, "original_name", "") or type(last).__name__
        if name not in ("Sigmoid", "Softmax"):
            return {}
        return {next(iter(expected)): (OutputKind.PROBABILITIES, f"the Sequential's last layer is {name}")}

    def signature(self, model: Any, sample: Any) -> Signature:
        if sample is None:
            raise UsageError("no sample inputs", SHAPE_HINT)
        feeds = _as_feeds(sample)
        arguments = forward_arguments(model)
        if arguments is not None and len(arguments) != len(feeds):
            given = ", ".join(f"{n} {a.dtype} {a.shape}" for n, a in feeds.items())
            example = ", ".join(f"{a}=..." for a in arguments)
            raise UsageError(
                f"forward() takes {len(arguments)} inputs ({', '.join(arguments)}) but the sample gives {len(feeds)} ({given})",
                f"a table or .npy is one input: give one array per input in an .npz (np.savez('rows.npz', {example}))",
            )
        return Signature(tuple(TensorSpec(name, str(array.dtype), (None, *array.shape[1:])) for name, array in feeds.items()))

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        if sample is None:
            raise UsageError("no sample inputs", SHAPE_HINT)
        feeds = _as_feeds(sample)
        if list(feeds) != signature.input_names and len(feeds) == len(signature.inputs):
            feeds = dict(zip(signature.input_names, feeds.values(), strict=True))
        return feeds

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch = _torch()
        if hasattr(model, "eval"):
            model.eval()
        with torch.no_grad():
            return outputs_dict(model(*_tensors(feeds, signature.input_names)))


def forward_arguments(model: Any) -> list[str] | None:
    """forward()'s required tensor arguments (TorchScript's schema, or the Python signature); None when unknown
    (``*args``, an exported program's flat inputs)."""
    import inspect

    schema = getattr(getattr(model, "forward", None), "schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments[1:] if not a.has_default_value()]
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
        return None
    return [p.name for p in parameters if p.default is p.empty]


def load_torchscript(path: Path, *, trust: bool = False) -> Any:
    """torch.jit.load, then (unless trusted) every compiled method's operators checked before any
    forward can run; the source was checked before loading (packager.safety.torch)."""
    module = _torch().jit.load(str(path), map_location="cpu").eval()
    if not trust:
        from packager.safety.torch_ops import check_loaded_module

        check_loaded_module(module, path.name)
    return module


def load_program(path: Path, *, trust: bool = False) -> Any:
    """torch.export.load, then (unless trusted) every graph node's target checked."""
    program = _torch().export.load(str(path))
    if not trust:
        from packager.safety.torch_ops import check_loaded_program

        check_loaded_program(program, path.name)
    return program


def exported_module(program: Any) -> Any:
    """The program as a module that every step here can use: torch 2.13's ``ExportedProgram.module()`` makes ``eval()`` and
    ``train()`` raise NotImplementedError ("Calling eval() is not supported yet"), and loading, tracing and exporting all call
    ``eval()`` first; a user's .pt2 was refused on every target. The mode switches become no-ops: an exported graph is
    fixed in the mode it was captured in (torch.ao's move_exported_model_to_eval is gone from torch 2.13)."""
    import types

    module = program.module()  # check_guards=False lets .pt2 -> .pt2 keep its dynamic batch but breaks tracing (SymInts)
    module.train = types.MethodType(lambda self, mode=True: self, module)
    module.eval = types.MethodType(lambda self: self, module)
    return module


def load_state_dict(path: Path, model_class: str, *, safetensors: bool = False) -> Any:
    """``module:Class`` (or a factory) built with no arguments, then the weights (torch.load weights_only, or a
    safetensors file whose header was checked), strictly."""
    torch = _torch()
    module = instantiate(model_class)
    if safetensors:
        state = require("safetensors.torch", "torch", "reading safetensors").load_file(str(path), device="cpu")
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path.name} holds a {type(state).__name__}, not a state dict", "save model.state_dict() with torch.save")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UsageError(
            f"{path.name} does not fit {model_class}: missing {_few(missing)}, unexpected {_few(unexpected)}",
            "check that --model-class is the class the weights were trained with, and its constructor defaults",
        )
    return module.eval()


def instantiate(model_class: str) -> Any:
    import importlib
    import os
    import sys

    module_name, _, attribute = model_class.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--model-class {model_class!r} is not module:Class", "e.g. --model-class my_package.models:MyNet")
    if os.getcwd() not in sys.path:  # the user's own code, as `python -m` would find it
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--model-class {model_class}: {exc}", "run from the directory that holds the module, or set PYTHONPATH") from None
    try:
        return factory()
    except TypeError as exc:
        raise UsageError(
            f"--model-class {model_class} cannot be built without arguments ({exc})",
            "point it at a factory function that returns the module",
        ) from None


def _few(keys: list[str]) -> str:
    return (", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")) if keys else "none"


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
    """A forward's result as named arrays: a dict's keys, ``output_i`` for a tuple, nested results joined with ``_``."""
    return {name: result_at(result, path).detach().cpu().numpy() for name, path in output_paths(result).items()}


def output_paths(result: Any, prefix: str = "") -> dict[str, tuple]:
    """output name -> the keys/indices that reach one tensor in a (possibly nested) dict/tuple/list result."""
    if isinstance(result, dict):
        items = [(f"{prefix}_{k}" if prefix else str(k), k) for k in result]
    elif isinstance(result, (tuple, list)):
        items = [(f"{prefix or 'output'}_{i}", i) for i in range(len(result))]
    else:
        return {prefix or "output_0": ()}
    paths: dict[str, tuple] = {}
    for name, key in items:
        for inner, path in output_paths(result[key], name).items():
            paths[inner] = (key, *path)
    return paths


def result_at(result: Any, path: tuple) -> Any:
    for key in path:
        result = result[key]
    return result


def flattened(model: Any, example: tuple) -> tuple[Any, list[str]]:
    """(a module whose forward returns a flat tuple of tensors, their names). Exporters take tensors or tuples: a dict
    output (``prim::DictConstruct`` in a traced .pt, a ModelOutput) failed torch.onnx.export's both exporters and
    coremltools. A TorchScript module is wrapped and traced again: the trace inlines the dict lookups (measured: the
    ONNX of a traced two-input dict model matches it to 1.2e-7)."""
    torch = _torch()
    with torch.no_grad():
        result = model(*example)
    paths = output_paths(result)
    if isinstance(result, torch.Tensor) or all(len(p) == 1 and isinstance(p[0], int) for p in paths.values()):
        return model, list(paths)

    class FlatOutputs(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple:
            out = self.inner(*args)
            return tuple(result_at(out, path) for path in paths.values())

    wrapper = FlatOutputs(model).eval()
    if isinstance(model, torch.jit.ScriptModule):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            wrapper = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
        # the trace calls the inner module's method, which still builds the dict: inlined, the peephole pass drops the
        # DictConstruct/__getitem__ pairs (coremltools has no dict ops; the ONNX exporter runs the same pass itself)
        torch._C._jit_pass_inline(wrapper.graph)
        torch._C._jit_pass_peephole(wrapper.graph)
        torch._C._jit_pass_dce(wrapper.graph)
    return wrapper, list(paths)


def _example(signature: Signature, options) -> tuple:
    return tuple(_tensors(options.example, signature.input_names))


def dynamic_dims(signature: Signature) -> dict[str, list[int]]:
    """input name -> the axes that vary (None in the signature; the batch always)."""
    return {spec.name: sorted({0} | {i for i, d in enumerate(spec.shape) if d is None}) for spec in signature.inputs}


def export_dynamic_shapes(signature: Signature) -> tuple:
    torch = _torch()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)  # one object: every input shares the batch
    return tuple(
        {axis: batch if axis == 0 else torch.export.Dim(f"{name}_{axis}", min=1, max=1 << 20) for axis in axes}
        for name, axes in dynamic_dims(signature).items()
    )


def _saved_size(module: Any) -> int:
    torch = _torch()
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.tell()


# ---------------------------------------------------------------- conversions


@converts(
    "torch",
    to="torchscript",
    quantize={"dynamic", "static"},
    options={"script": "torch.jit.script instead of trace (keeps data-dependent control flow)"},
    note="torch.jit.trace (script on request); int8 dynamic (Linear/LSTM/GRU) or static (FX, calibrated)",
)
def torch_to_torchscript(model: Any, signature: Signature, out: Path, options) -> Any:
    example = _example(signature, options)
    method = "script" if options.option("script") else "trace"
    try:
        compiled = _compile(model, example, method)
        details: dict[str, Any] = {"method": method, "torch": version_of("torch")}
        if options.quantize in ("dynamic", "static"):
            quantized = _quantized_module(model, options, example)
            details["quantized_in_conversion"] = {"mode": options.quantize, "size_before": _saved_size(compiled)}
            compiled = _compile(quantized, example, method)
        path = out / "model.pt"
        _torch().jit.save(compiled, str(path))
    except (UnsupportedConversion, UsageError):
        raise
    except Exception as exc:
        hint = (
            "make forward() scriptable (type annotations, no unsupported Python)"
            if options.option("script")
            else "make forward() traceable (no data-dependent Python control flow), or pass --script"
        )
        raise ConversionError(f"torch.jit.{method} failed on {type(model).__name__}: {first_line(exc)}", hint) from exc
    return Artifact(path, details)


def _compile(model: Any, example: tuple, method: str) -> Any:
    torch = _torch()
    if method == "script" and not isinstance(model, torch.jit.ScriptModule):
        return torch.jit.script(model.eval())
    return trace_torch(model, example)


def _quantized_module(model: Any, options, example: tuple) -> Any:
    """Dynamic: int8 weights for Linear/LSTM/GRU. Static: FX graph mode, observers calibrated on the
    calibration rows (or the sample), then int8 kernels for every supported layer."""
    import copy

    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "named_modules"):
        raise UnsupportedConversion(
            "int8 needs the Python nn.Module, not a TorchScript or exported program",
            "pass the module through the Python API or --model-class",
        )
    if options.quantize == "dynamic":
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    rows = options.calibration or options.example
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example)
        names = list(rows)
        count = len(rows[names[0]])
        with torch.no_grad():
            for start in range(0, count, 16):
                prepared(*_tensors({n: rows[n][start : start + 16] for n in names}, names))
        return convert_fx(prepared)


@converts("torch", to="onnx", quantize={"dynamic", "static", "fp16"}, note="torch.onnx dynamo exporter, TorchScript exporter as fallback")
def torch_to_onnx(model: Any, signature: Signature, out: Path, options) -> Any:
    """Dynamic batch axis; the exporter actually used is recorded (dynamo first, TorchScript-based on failure). Dict
    and nested outputs are flattened, named by their keys."""
    torch = _torch()
    example = _example(signature, options)
    path = out / "model.onnx"
    names = signature.input_names
    module, outputs = flattened(model, example)
    dynamic = dynamic_dims(signature)
    dynamic_axes = {n: {axis: "batch" if axis == 0 else f"{n}_{axis}" for axis in axes} for n, axes in dynamic.items()}
    failures = []
    # torch.export traces Python code: a TorchScript module has none (it failed with "step 1/3" every time, ~2 s)
    exporters = (False,) if isinstance(module, torch.jit.ScriptModule) else (True, False)
    for dynamo in exporters:
        try:
            with quiet_output():
                kwargs: dict[str, Any] = {"input_names": names, "output_names": outputs, "opset_version": options.opset, "dynamo": dynamo}
                if dynamo:
                    kwargs["dynamic_shapes"] = export_dynamic_shapes(signature)
                    kwargs["external_data"] = False
                else:
                    kwargs["dynamic_axes"] = dynamic_axes
                torch.onnx.export(module, example, str(path), **kwargs)
            _check_dynamic(path, dynamic)
            break
        except Exception as exc:
            failures.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {exporter_reason(exc)}")
            path.unlink(missing_ok=True)
    else:
        raise ConversionError(f"torch.onnx.export failed ({'; '.join(failures)})", _onnx_hint(model, failures))
    onnx = require("onnx", "torch", "ONNX export")
    proto = onnx.load(str(path))
    skipped = "skipped: torch.export takes a Python nn.Module, not TorchScript" if len(exporters) == 1 else None
    return Artifact(
        path,
        {
            "exporter": "dynamo" if not failures and not skipped else "torchscript" + (" (dynamo failed)" if failures else ""),
            "dynamo_error": failures[0] if failures else skipped,
            "flattened_outputs": outputs if module is not model else None,
            "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
            "ir_version": proto.ir_version,
            "torch": version_of("torch"),
        },
    )


def exporter_reason(exc: BaseException) -> str:
    """The line that says why: torch.onnx's dynamo error starts with a generic "step 1/3 ... Next steps:" banner and
    puts the cause under "## Exception summary"; ANSI colour codes dropped; not cut (the reason is the point)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        after = lines[lines.index("## Exception summary") + 1 :]
        if after:
            return after[0]
    return lines[0] if lines else type(exc).__name__


def _onnx_hint(model: Any, failures: list[str]) -> str:
    """A hint that can work: another opset only helps an operator missing from this opset."""
    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule):
        return (
            "TorchScript is exported by tracing only: export the Python nn.Module instead (packager.convert(module, to='onnx', "
            "sample=...) in Python, or save its state_dict and pass --model-class), or use --to torchscript"
        )
    if any("UnsupportedOperatorError" in f for f in failures):
        return "an operator has no ONNX form at this opset: try a newer --opset, or --to torchscript"
    return "check that forward() is exportable (torch.onnx's documentation lists what is not), or use --to torchscript"


def _check_dynamic(path: Path, dynamic: dict[str, list[int]]) -> None:
    """The dynamo exporter may specialize an axis it was asked to keep dynamic (an LSTM's sequence
    length): that is a failure, so the fallback exporter gets its turn."""
    onnx = require("onnx", "torch", "ONNX export")
    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        fixed = [axis for axis in dynamic.get(value.name, []) if axis < len(dims) and dims[axis].HasField("dim_value")]
        if fixed:
            raise ConversionError(f"the exporter fixed axes {fixed} of input {value.name} that should stay dynamic")


@converts("torch", to="pt2", note="torch.export with a dynamic batch axis")
def torch_to_pt2(model: Any, signature: Signature, out: Path, options) -> Any:
    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedConversion("torch.export cannot export a TorchScript module", "pass the Python nn.Module through the API")
    example = _example(signature, options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(model.eval(), example, dynamic_shapes=export_dynamic_shapes(signature))
                dynamic = True
            except Exception as exc:
                if any(len(axes) > 1 for axes in dynamic_dims(signature).values()):
                    raise UnsupportedConversion(
                        f"torch.export cannot keep the requested axes dynamic: {first_line(exc)}",
                        "drop --dynamic-axes for .pt2, or use --to onnx / torchscript",
                    ) from None
                program = torch.export.export(model.eval(), example)
                dynamic = False
        path = out / "model.pt2"
        torch.export.save(program, str(path))
    except UnsupportedConversion:
        raise
    except Exception as exc:
        raise ConversionError(
            f"torch.export failed on {type(model).__name__}: {first_line(exc)}", "see torch.export's documentation on graph breaks"
        ) from exc
    return Artifact(path, {"dynamic_batch": dynamic, "torch": version_of("torch")})


def _to_coreml(model: Any, signature: Signature, out: Path, options, *, package: bool) -> Any:
    from .coreml import convert_to_coreml

    example = _example(signature, options)
    traced = trace_torch(flattened(model, example)[0], example)  # coremltools has no dict construct either
    hint = "use --to torchscript (the same module, no operator conversion) or --to onnx"
    return convert_to_coreml(
        traced, signature.inputs, out, package=package, origin="traced TorchScript", what=type(model).__name__, hint=hint
    )


@converts("torch", to="coreml", quantize={"weights", "fp16"}, note="coremltools from a traced module (.mlmodel, neural network)")
def torch_to_coreml(model: Any, signature: Signature, out: Path, options) -> Any:
    return _to_coreml(model, signature, out, options, package=False)


@converts("torch", to="mlpackage", quantize={"weights"}, note="coremltools ML program from a traced module (fp16 weights by default)")
def torch_to_mlpackage(model: Any, signature: Signature, out: Path, options) -> Any:
    return _to_coreml(model, signature, out, options, package=True)


# ---------------------------------------------------------------- runtimes


def _check_torch(path: Path) -> None:
    from packager.safety.torch import check_torch_file

    check_torch_file(path)


# torch's legacy (non-zip) serialization starts with the pickled int 0x1950a86a20f9469cfc6c (LONG1, 10 bytes)
TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."


def _torch_family(path: Path) -> str | None:
    """Which torch archive a zip is, by members: one family (a TorchScript archive has data.pkl too, a torch.export
    one nests TorchScript), so the most specific layout wins."""
    from packager.formats import zip_names

    names = zip_names(path)
    if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
        return "pt2"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "torch"
    return None


def is_pt2(path: Path, head: bytes) -> bool:
    return _torch_family(path) == "pt2"


def is_torchscript(path: Path, head: bytes) -> bool:
    return _torch_family(path) == "torchscript"


def is_torch_save(path: Path, head: bytes) -> bool:
    """torch.save's zip archive, or its legacy form (_use_new_zipfile_serialization=False: pickles, then raw storages)."""
    if head.startswith(b"PK\x03\x04"):
        return _torch_family(path) == "torch"
    return head[:1] == b"\x80" and TORCH_LEGACY_MAGIC in head[:32]


# data.pkl and constants.pkl members are pickles, checked by _check_torch
TORCHSCRIPT = Format(
    "torchscript", title="TorchScript", suffix=".pt", check=_check_torch, detect=is_torchscript, containers=("zip",), pickle_members=True
)
PT2 = Format(
    "pt2", title="torch.export program", suffix=".pt2", check=_check_torch, detect=is_pt2, containers=("zip",), pickle_members=True
)
TORCH_SAVE = Format(
    "torch",
    title="torch.save archive / state dict",
    suffix=".pt",
    suffixes=(".pth",),
    check=_check_torch,
    detect=is_torch_save,
    containers=("zip", "pickle"),
    pickle_members=True,
)


def limit_torch_threads(threads: int | None) -> None:
    """torch has no per-module setting: its intra-op pool is process-wide."""
    if threads:
        _torch().set_num_threads(threads)


class _TorchRuntime(Runtime):
    distribution = "torch"
    thread_control = "process"  # torch.set_num_threads

    def predict(self, module: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch = _torch()
        with torch.no_grad():
            produced = outputs_dict(module(*_tensors(feeds, signature.input_names)))
        return (
            dict(zip(signature.output_names, produced.values(), strict=False)) if signature.outputs else produced
        )  # extra outputs dropped


# TorchScript/torch.export run the same ATen kernels as the module; int8 modes are quantized while converting.
TORCHSCRIPT_CRITERIA = criteria_table({None: SAME_KERNELS, "dynamic": INT8, "static": INT8_STATIC})
PT2_CRITERIA = criteria_table({None: SAME_KERNELS})


@runs(TORCHSCRIPT, criteria=TORCHSCRIPT_CRITERIA)
class TorchScriptRuntime(_TorchRuntime):
    name = "torch.jit"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        limit_torch_threads(threads)
        return load_torchscript(path, trust=trust)


@runs(PT2, criteria=PT2_CRITERIA)
class ExportedProgramRuntime(_TorchRuntime):
    name = "torch.export"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        limit_torch_threads(threads)
        return load_program(path, trust=trust).module()
