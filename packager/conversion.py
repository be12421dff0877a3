"""The conversion pipeline: load safely -> signature + samples -> convert -> quantize -> validate -> package.

Every step asks the plugin registry; nothing here knows any particular framework.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from packager import __version__, sandbox
from packager.errors import NotQuantizable, UnsupportedConversion, UsageError, ValidationFailed, reading
from packager.formats import FORMATS, detect_format
from packager.package import (
    INPUT_EXAMPLE, MANIFEST, REQUIREMENTS, Manifest, Quantization, SourceInfo, digest_files,
    input_example, path_size, sha256_file, staging_dir, write_json,
)
from packager.plugins import PluginRegistry, default_registry
from packager.samples import load_sample
from packager.signature import (Signature, TensorSpec, batch_size, parse_dynamic_axes, parse_input_shape, spec_of, synthesize,
                                with_dynamic_axes)
from packager.validation import ValidationReport, build_report, compare_outputs, not_executed_report, tolerance_for

QUANTIZE_MODES = ("dynamic", "static", "fp16", "weights", "auto")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ConvertOptions:
    """Options every converter receives."""

    opset: int | None = None
    quantize: str | None = None
    trust: bool = False
    example: Mapping[str, Any] | None = None  # a few sample rows, for converters that trace the model
    calibration: Mapping[str, Any] | None = None  # calibration rows, for converters that quantize while converting
    script: bool = False  # TorchScript: torch.jit.script instead of trace


@dataclass(frozen=True)
class Artifact:
    """What a converter wrote (a file or folder in the staging dir) and facts about how."""

    path: Path
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantizeResult:
    applied: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A loaded source model and where it came from."""

    framework: str
    model: Any
    info: SourceInfo


@dataclass(frozen=True)
class Package:
    """A written package directory."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def validation(self) -> Mapping[str, Any]:
        return self.manifest.validation


def load_source(model_or_path: Any, *, trust: bool = False, model_class: str | None = None, registry: PluginRegistry | None = None) -> Source:
    """Load a model file through its framework plugin (safely), or wrap an in-memory model.
    ``model_class`` ("module:Class") is the code a weights-only file (a torch state dict) is loaded into."""
    registry = registry or default_registry()
    if isinstance(model_or_path, (str, Path)):
        from packager.safety import check_file

        path = Path(model_or_path)
        fmt = detect_format(path)
        if not trust:
            check_file(path, fmt)
        name = registry.framework_for_format(fmt)
        plugin = registry.framework(name)
        if model_class and not getattr(plugin, "takes_model_class", False):
            raise UsageError(f"--model-class does not apply to {path.name} ({fmt}: it carries its own architecture)", "drop --model-class; it is for PyTorch state dicts")
        with reading(f"{path.name} ({fmt})"):
            model = plugin.load(path, fmt, trust=trust, **({"model_class": model_class} if model_class else {}))
            details = plugin.describe(model)
        digest = sha256_file(path) if path.is_file() else None
        return Source(name, model, SourceInfo(name, _class_name(model), path.name, fmt, digest, details))
    name = registry.framework_for_object(model_or_path)
    plugin = registry.framework(name)
    return Source(name, model_or_path, SourceInfo(name, _class_name(model_or_path), None, None, None, plugin.describe(model_or_path)))


def framework_of(path: str | Path, *, trust: bool = False, model_class: str | None = None) -> str:
    """The framework that loads ``path`` (its model is loaded to know: in the sandbox unless ``trust``)."""
    if sandbox.confines(trust):
        from packager import confined

        return confined.framework_of(path, model_class=model_class)
    return load_source(path, trust=trust, model_class=model_class).framework


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def prepare_inputs(source: Source, sample: Any = None, input_shape: str | None = None, registry: PluginRegistry | None = None,
                   dynamic_axes: str | Mapping[str | None, Any] | None = None) -> tuple[Signature, dict, dict]:
    """Signature (inputs and outputs), sample feeds, and the source model's outputs on them."""
    registry = registry or default_registry()
    plugin = registry.framework(source.framework)
    data = load_sample(sample) if isinstance(sample, (str, Path)) else sample
    if data is None and input_shape:  # shapes but no data: synthesize rows of those shapes
        shapes = parse_input_shape(input_shape)
        data = synthesize(Signature(tuple(TensorSpec(n, "float32", (None, *s[1:])) for n, s in shapes.items())), rows=8)
    label = f"the model in {source.info.file}" if source.info.file else f"the {source.framework} model"
    with reading(label, "it loaded, but is not a usable fitted model; re-export it from the training code"):
        signature = plugin.signature(source.model, data)
        if input_shape:
            signature = _apply_input_shape(signature, parse_input_shape(input_shape))
        if dynamic_axes:
            axes = parse_dynamic_axes(dynamic_axes) if isinstance(dynamic_axes, str) else {k: tuple(v) for k, v in dynamic_axes.items()}
            signature = with_dynamic_axes(signature, axes)
        feeds = plugin.feeds(source.model, signature, data)
        expected = plugin.predict(source.model, signature, feeds)
    outputs = tuple(spec_of(name, value) for name, value in expected.items())
    return signature.with_outputs(outputs), feeds, expected


def _apply_input_shape(signature: Signature, shapes: dict[str, tuple]) -> Signature:
    if len(shapes) == 1 and len(signature.inputs) == 1:
        (shape,) = shapes.values()
        specs = (replace(signature.inputs[0], shape=(None, *shape[1:])),)
    else:
        unknown = set(shapes) - set(signature.input_names)
        if unknown:
            raise UsageError(f"--input-shape names unknown inputs {sorted(unknown)}", f"the model's inputs are {signature.input_names}")
        specs = tuple(replace(s, shape=(None, *shapes[s.name][1:])) if s.name in shapes else s for s in signature.inputs)
    for old, new in zip(signature.inputs, specs):
        if old.shape[1:] and None not in old.shape[1:] and old.shape[1:] != new.shape[1:]:
            raise UsageError(
                f"--input-shape gives {old.name} shape {new.shape[1:]}, but the model expects {old.shape[1:]}",
                "drop --input-shape or fix it",
            )
    return Signature(specs, signature.outputs, signature.columnar)


def convert(
    model_or_path: Any,
    to: str = "onnx",
    *,
    out: str | Path | None = None,
    quantize: str | None = None,
    sample: Any = None,
    calibration: Any = None,
    input_shape: str | None = None,
    dynamic_axes: str | Mapping[str | None, Any] | None = None,
    model_class: str | None = None,
    script: bool = False,
    opset: int | None = None,
    trust: bool = False,
    accept_mismatch: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    registry: PluginRegistry | None = None,
) -> Package:
    """Convert a model (object or file) to ``to``, optionally quantize, validate, and write a package.
    A file is converted in the sandbox (``packager.sandbox``) unless ``trust``."""
    _check_quantize_args(quantize, calibration)
    if isinstance(model_or_path, (str, Path)) and sandbox.confines(trust, registry):
        from packager import confined

        return confined.convert(model_or_path, to, out=out, overwrite=overwrite, progress=progress, sample=sample, calibration=calibration,
                                quantize=quantize, input_shape=input_shape, dynamic_axes=dynamic_axes, model_class=model_class, script=script,
                                opset=opset, accept_mismatch=accept_mismatch)
    registry = registry or default_registry()
    step = progress or (lambda message: None)
    step("loading the source model")
    source = load_source(model_or_path, trust=trust, model_class=model_class, registry=registry)
    conversion = registry.conversion(source.framework, to)
    if quantize and quantize != "auto" and quantize not in conversion.quantize:
        raise UnsupportedConversion(
            f"{source.framework} -> {to} does not support --quantize {quantize}",
            f"supported modes: {', '.join(sorted(conversion.quantize)) or 'none'}",
        )
    step("inferring the signature and sample inputs")
    signature, feeds, expected = prepare_inputs(source, sample, input_shape, registry, dynamic_axes)
    destination = Path(out) if out else Path.cwd() / f"{_stem(source)}-{to}"
    calibration_feeds = _calibration_feeds(registry, source, signature, calibration)
    options = ConvertOptions(opset=opset, quantize=quantize, trust=trust, example={k: v[:4] for k, v in feeds.items()},
                             calibration=calibration_feeds, script=script)
    with staging_dir(destination, overwrite) as staging:
        step(f"converting {source.framework} -> {to}")
        artifact = conversion.func(source.model, signature, staging, options)
        quant = Quantization(None, False)
        if quantize and "quantized_in_conversion" in artifact.details:  # e.g. TorchScript int8: done while tracing
            done = artifact.details["quantized_in_conversion"]
            quant = Quantization(done["mode"], True, "", done["size_before"], path_size(artifact.path))
        elif quantize:
            step(f"quantizing ({quantize})")
            artifact, quant = _quantize(registry, to, artifact, quantize, calibration_feeds)
        step(f"validating in the {to} runtime")
        report = _validate_conversion(registry, source, to, artifact, quant, signature, feeds, expected, trust, accept_mismatch)
        step("writing the package")
        manifest = _write_package(staging, registry, source, conversion, artifact, signature, feeds, quant, report, trust, to)
    return Package(destination.absolute(), manifest)


def _validate_conversion(registry, source, to, artifact, quant, signature, feeds, expected, trust, accept_mismatch) -> ValidationReport:
    """Validate with the tolerance of the target and quantization; a failure raises unless accepted."""
    label_outputs = registry.framework(source.framework).label_outputs(source.model)
    tolerance = tolerance_for(to, quant.mode if quant.applied else None)
    report = validate_artifact(registry, to, artifact.path, signature, feeds, expected, tolerance, label_outputs, trust)
    if report.status != "failed":
        return report
    if not accept_mismatch:
        raise ValidationFailed(
            f"the {to} artifact does not reproduce the source: " + "; ".join(report.failures()),
            "check the sample data or converter options; --accept-mismatch keeps it anyway (recorded in the manifest)",
            report=report,
        )
    return replace(report, accepted_mismatch=True)


def package_source(path: str | Path, out: str | Path, *, trust: bool = False, sample: Any = None, input_shape: str | None = None,
                   model_class: str | None = None, registry: PluginRegistry | None = None) -> Package:
    """Package a source model file as it is (no conversion), so a registry can hold it as the root of a lineage.
    The file is loaded in the sandbox unless ``trust``."""
    import shutil

    if sandbox.confines(trust, registry):
        from packager import confined

        return confined.package_source(path, out, sample=sample, input_shape=input_shape, model_class=model_class)
    registry = registry or default_registry()
    path = Path(path)
    source = load_source(path, trust=trust, model_class=model_class, registry=registry)
    signature, feeds, _ = prepare_inputs(source, sample, input_shape, registry=registry)
    with staging_dir(Path(out), True) as staging:
        target = staging / path.name
        shutil.copy2(path, target) if path.is_file() else shutil.copytree(path, target)
        write_json(staging / INPUT_EXAMPLE, input_example(feeds))
        framework = registry.framework(source.framework)
        manifest = Manifest(
            format=source.info.format or "unknown", model_file=path.name,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), source=source.info, signature=signature,
            quantization=Quantization(None, False), conversion={"converter": "none: the source model as given"},
            validation={"status": "source", "runtime": source.framework, "runtime_version": framework.versions().get(source.framework, ""), "samples": 0, "outputs": []},
            versions={**framework.versions(), "packager": __version__}, files=digest_files(staging), trusted_source=trust)
        write_json(staging / MANIFEST, manifest.to_dict())
    return Package(Path(out).absolute(), manifest)


def _stem(source: Source) -> str:
    return Path(source.info.file).stem if source.info.file else type(source.model).__name__.lower()


def _check_quantize_args(quantize: str | None, calibration: Any) -> None:
    if quantize and quantize not in QUANTIZE_MODES:
        raise UsageError(f"unknown quantization mode {quantize!r}", f"choose one of {', '.join(QUANTIZE_MODES)}")
    if quantize == "static" and calibration is None:
        raise UsageError("--quantize static needs calibration data", "pass --calibration FILE (.npy, .csv or .parquet rows like the model's input)")
    if calibration is not None and quantize != "static":
        raise UsageError("--calibration is only used with --quantize static", "add --quantize static or drop --calibration")


def _calibration_feeds(registry, source, signature, calibration) -> dict | None:
    if calibration is None:
        return None
    data = load_sample(calibration) if isinstance(calibration, (str, Path)) else calibration
    return registry.framework(source.framework).feeds(source.model, signature, data)


def _quantize(registry, to, artifact, mode, calibration_feeds):
    quantizer = registry.quantizers.get(to)
    if quantizer is None:
        raise NotQuantizable(f"{to} artifacts cannot be quantized by packager", "drop --quantize")
    quantized = artifact.path.with_name(f"{artifact.path.stem}.{mode}{artifact.path.suffix}")
    before = path_size(artifact.path)
    result: QuantizeResult = quantizer.func(artifact.path, quantized, mode, calibration_feeds)
    if not result.applied:
        return artifact, Quantization(mode, False, result.reason, before, before)
    if artifact.path.is_dir():  # a folder format (.mlpackage, SavedModel): a rename cannot overwrite it
        import shutil

        shutil.rmtree(artifact.path)
    quantized.replace(artifact.path)
    details = {**artifact.details, "quantization": dict(result.details)}
    return Artifact(artifact.path, details), Quantization(result.details.get("mode", mode), True, result.reason, before, path_size(artifact.path))


def validate_artifact(registry, fmt, path, signature, feeds, expected, tolerance, label_outputs, trust=False) -> ValidationReport:
    """Run ``path`` in the runtime registered for ``fmt`` and compare with ``expected``."""
    runtime = registry.runtime(fmt)
    if runtime is None:
        raise UnsupportedConversion(f"no runtime is registered for {fmt}", "install the plugin that runs this format")
    if not runtime.executes or not getattr(runtime, "can_execute", lambda p: True)(path):
        return not_executed_report(runtime=runtime.name, runtime_version=runtime.version(), details=runtime.check(path, signature))
    handle = runtime.load(path, trust=trust)
    actual = runtime.predict(handle, signature, feeds)
    # a format may drop auxiliary outputs (PMML: SVC probabilities); the first output is never optional
    optional = frozenset(list(expected)[1:]) if getattr(runtime, "may_omit_auxiliary_outputs", False) else frozenset()
    outputs = compare_outputs(expected, actual, tolerance, label_outputs, optional)
    details = dict(getattr(runtime, "details", lambda h: {})(handle))
    return build_report(outputs, runtime=runtime.name, runtime_version=runtime.version(), samples=batch_size(feeds), tolerance=tolerance, details=details)


def _write_package(staging, registry, source, conversion, artifact, signature, feeds, quant, report, trust, to) -> Manifest:
    runtime = registry.runtime(to)
    framework = registry.framework(source.framework)
    versions = {**framework.versions(), **(runtime.versions() if runtime else {}), "packager": __version__}
    write_json(staging / INPUT_EXAMPLE, input_example(feeds))
    (staging / REQUIREMENTS).write_text("\n".join(runtime.requirements() if runtime else []) + "\n")
    files = digest_files(staging)
    manifest = Manifest(
        format=to,
        model_file=artifact.path.name,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source=source.info,
        signature=signature,
        quantization=quant,
        conversion={"converter": conversion.name, "title": FORMATS[to].title if to in FORMATS else to, **artifact.details},
        validation=report.to_dict(),
        versions=versions,
        files=files,
        trusted_source=trust,
        accepted_mismatch=report.accepted_mismatch,
    )
    write_json(staging / MANIFEST, manifest.to_dict())
    return manifest
