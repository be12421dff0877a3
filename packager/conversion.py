"""The conversion pipeline: load safely -> signature + samples -> convert -> quantize -> validate -> package.

Every step asks the plugin registry; nothing here knows any particular framework.
"""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from packager import __version__, errors, sandbox
from packager.contract import Artifact, ConvertOptions, Delegated, QuantizeResult  # noqa: F401  (re-exported: plugins written before import them here)
from packager.errors import (
    ConversionError,
    NotApplicable,
    NotQuantizable,
    PackagerError,
    PluginError,
    UnsupportedConversion,
    UsageError,
    ValidationFailed,
    first_line,
    reading,
)
from packager.evidence import Evidence, gather
from packager.formats import detect_format
from packager.graph import as_conversion
from packager.heap import frozen_while
from packager.package import (
    INPUT_EXAMPLE,
    MANIFEST,
    REQUIREMENTS,
    Manifest,
    Quantization,
    SourceInfo,
    check_destination,
    digest_files,
    input_example,
    path_size,
    sha256_file,
    staging_dir,
    write_json,
    write_mlmodel,
)
from packager.plugins import PluginRegistry, default_registry
from packager.requests import ConvertRequest, PackageRequest
from packager.samples import load_sample
from packager.signature import Signature
from packager.sources import resolve_source
from packager.validation import (
    Criterion,
    OutputKind,
    ValidationReport,
    build_report,
    compare_outputs,
    criterion_for,
    for_output,
    not_executed_report,
    parent_failure,
    parse_output_kinds,
    parse_tolerances,
    with_min_agreement,
    with_parent,
)

log = logging.getLogger(__name__)
AUTO = "auto"  # tries the modes the target format's quantizers offer (_quantize_auto); the other modes are the registry's
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """A loaded source model and where it came from."""

    framework: str
    model: Any
    info: SourceInfo
    example: Any = None  # rows the source carries (an MLflow folder's input_example): validation data after --sample
    declares: Any = None  # the container's signature over the plugin's (``Delegated.declares``: an MLmodel's schema)


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


def load_source(
    model_or_path: Any,
    *,
    trust: bool = False,
    model_class: str | None = None,
    registry: PluginRegistry | None = None,
    task: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Source:
    """Load a model file through its framework plugin (safely), or wrap an in-memory model.
    ``model_class`` ("module:Class") is the code a weights-only file (a torch state dict) is loaded into; ``task``
    (e.g. "token-classification") picks the head of a model folder whose config names another or none; ``lineage`` is
    what fetching the file from a URI recorded (``packager.sources``), merged into the source's details."""
    registry = registry or default_registry()
    if isinstance(model_or_path, (str, Path)):
        from packager.safety import check_file

        path = Path(model_or_path)
        fmt = detect_format(path, registry)
        if not trust:
            check_file(path, fmt, registry)
        name = registry.framework_for_format(fmt)
        plugin = registry.framework(name)
        if model_class and not plugin.takes_model_class:
            raise UsageError(
                f"--model-class does not apply to {path.name} ({fmt}: it carries its own architecture)",
                "drop --model-class; it is for PyTorch state dicts",
            )
        if task and not plugin.takes_task:
            raise UsageError(
                f"--task does not apply to {path.name} ({fmt}: its task is fixed)", "drop --task; it is for Hugging Face folders"
            )
        options = {**({"model_class": model_class} if model_class else {}), **({"task": task} if task else {})}
        with reading(f"{path.name} ({fmt})"):
            model = plugin.load(path, fmt, trust=trust, **options)
            carried = model if isinstance(model, Delegated) else Delegated(name, model)  # a container's model: its owner
            name, model, plugin = carried.framework, carried.model, registry.framework(carried.framework)
            if not plugin.claims(model):  # a pickle holding another framework's estimator (a CatBoostClassifier)
                name = registry.framework_for_object(model)
                plugin = registry.framework(name)
            details = _merged({**plugin.describe(model), **carried.details}, lineage or {})
        digest = sha256_file(path) if path.is_file() else None
        info = SourceInfo(name, _class_name(model), path.name, fmt, digest, details)
        return Source(name, model, info, carried.example, carried.declares)
    name = registry.framework_for_object(model_or_path)
    plugin = registry.framework(name)
    return Source(name, model_or_path, SourceInfo(name, _class_name(model_or_path), None, None, None, plugin.describe(model_or_path)))


def _merged(details: Mapping[str, Any], lineage: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` with ``lineage`` laid over, one level deep (``{"mlflow": {...}}`` from the folder and from the URI)."""
    merged = dict(details)
    for key, value in lineage.items():
        known = merged.get(key)
        merged[key] = {**known, **value} if isinstance(known, Mapping) and isinstance(value, Mapping) else value
    return merged


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def prepare_inputs(
    source: Source,
    sample: Any = None,
    input_shape: str | None = None,
    registry: PluginRegistry | None = None,
    dynamic_axes: str | Mapping[str | None, Any] | None = None,
) -> tuple[Signature, dict, dict]:
    """Signature (inputs and outputs), sample feeds, and the source model's outputs on them (see ``gather_evidence``)."""
    evidence = gather_evidence(source, sample, input_shape, registry, dynamic_axes)
    return evidence.signature, dict(evidence.feeds), dict(evidence.expected)


def gather_evidence(
    source: Source,
    sample: Any = None,
    input_shape: str | None = None,
    registry: PluginRegistry | None = None,
    dynamic_axes: str | Mapping[str | None, Any] | None = None,
    *,
    calibration: Any = None,
    example: Any = None,
    output_kinds: Mapping[str, Any] | None = None,
) -> Evidence:
    """Signature, validation rows (sample, calibration, input example, fitted statistics, synthetic: the first there
    is), and the source's outputs on them at full precision and on the cast input."""
    registry = registry or default_registry()
    return gather(
        source,
        registry.framework(source.framework),
        sample=sample,
        calibration=calibration,
        example=example if example is not None else source.example,
        input_shape=input_shape,
        dynamic_axes=dynamic_axes,
        output_kinds=output_kinds,
        declares=source.declares,
    )


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
    plugin_options: Mapping[str, Any] | None = None,
    opset: int | str | None = None,
    trust: bool = False,
    accept_mismatch: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    registry: PluginRegistry | None = None,
    output_kind: Any = None,
    tolerance: Any = None,
    min_agreement: float | None = None,
    task: str | None = None,
) -> Package:
    """Convert a model (object or file) to ``to``, optionally quantize, validate, and write a package.

    ``plugin_options`` are options a converter declares for itself (``@converts(..., options=...)``); ``script=True``
    is the TorchScript converter's ``script`` option, kept as an argument for callers written before.
    A file is converted in the sandbox (``packager.sandbox``) unless ``trust``: this builds the request and submits it."""
    on_file = isinstance(model_or_path, (str, Path))
    request = ConvertRequest(
        path=str(model_or_path) if on_file else None,
        to=to,
        out=str(out) if out is not None else None,
        quantize=quantize,
        sample=sample,
        calibration=calibration,
        input_shape=input_shape,
        dynamic_axes=dynamic_axes,
        model_class=model_class,
        task=task,
        plugin_options={**({"script": True} if script else {}), **(plugin_options or {})},
        opset=opset,
        output_kind=output_kind,
        tolerance=tolerance,
        min_agreement=min_agreement,
        accept_mismatch=accept_mismatch,
        overwrite=overwrite,
    )
    if on_file:
        return submit(request, trust=trust, progress=progress, registry=registry)
    _check_quantize_args(request.quantize, request.calibration, registry or default_registry())
    if request.out is not None:
        check_destination(Path(request.out), request.overwrite)
    source = model_or_path if isinstance(model_or_path, Source) else load_source(model_or_path, registry=registry)
    return convert_source(source, request, trust=trust, progress=progress, registry=registry)


def submit(
    request: ConvertRequest, *, trust: bool = False, progress: Progress | None = None, registry: PluginRegistry | None = None
) -> Package:
    """Run a conversion request of a file where it must run: the convert worker in a sandbox child (``packager.confined``)
    unless ``trust``, else the worker here. Entry points (the API above, the CLI's convert) build the request once and
    call this; nothing calls it again on the way (one ``convert --quantize`` ran ``convert`` twice: parent, then child)."""
    _check_quantize_args(request.quantize, request.calibration, registry or default_registry())
    request = local_request(request)
    confine = sandbox.confines(trust, registry)
    log.debug("submitting the conversion of %s to %s %s", request.path, request.to, "to a sandbox child" if confine else "here")
    if confine:
        from packager import confined

        destination, manifest = confined.convert(request, progress=progress)
        return Package(destination, manifest)
    return run_convert(request, trust=trust, progress=progress, registry=registry)


def local_request(request: Any) -> Any:
    """The request with a URI path fetched (``packager.sources``: ``models:/``, ``runs:/``) and the lineage the fetch
    learned: in the parent, outside the sandbox, which has no network and no tracking store. A local path is returned as
    it was, with no lineage, whatever files the folder holds (the lineage comes from the fetch, never from the folder)."""
    path = getattr(request, "path", None)
    if path is None:
        return request
    resolved = resolve_source(path)
    return request if str(resolved.path) == path else replace(request, path=str(resolved.path), lineage=resolved.lineage)


def run_convert(
    request: ConvertRequest, *, trust: bool = False, progress: Progress | None = None, registry: PluginRegistry | None = None
) -> Package:
    """The convert worker (one target): load the file here, with the static checks unless ``trust``, and convert it."""
    assert request.path is not None  # a request for an object in memory is converted by ``convert`` itself
    registry = registry or default_registry()
    step = progress or (lambda message: None)
    if request.out is not None:
        check_destination(Path(request.out), request.overwrite)  # before loading: a TensorFlow model takes seconds to load
    step("loading the source model")
    source = load_source(
        request.path, trust=trust, model_class=request.model_class, registry=registry, task=request.task, lineage=request.lineage
    )
    return convert_source(source, request, trust=trust, progress=progress, registry=registry)


@frozen_while
def convert_source(
    source: Source,
    request: ConvertRequest,
    *,
    trust: bool = False,
    progress: Progress | None = None,
    registry: PluginRegistry | None = None,
) -> Package:
    """Convert a loaded source to ``request.to``: convert, quantize, validate against the source, write the package."""
    registry = registry or default_registry()
    step = progress or (lambda message: None)
    to, quantize, calibration, sample = request.to, request.quantize, request.calibration, request.sample
    conversion = as_conversion(registry.route(source.framework, to))  # a path of hops (packager.graph)
    if quantize and quantize != "auto" and quantize not in conversion.quantize:
        raise UnsupportedConversion(
            f"{source.framework} -> {to} does not support --quantize {quantize}",
            f"supported modes: {', '.join(sorted(conversion.quantize)) or 'none'}",
        )
    plugin_options = _plugin_options(registry, conversion, request.plugin_options)
    step("inferring the signature and sample inputs")
    output_kind, tolerance = request.output_kind, request.tolerance
    evidence = gather_evidence(
        source,
        sample,
        request.input_shape,
        registry,
        request.dynamic_axes,
        calibration=calibration,
        output_kinds=parse_output_kinds(output_kind) if not isinstance(output_kind, Mapping) else output_kind,
    )
    signature, feeds = evidence.signature, evidence.feeds
    judge = Judge(parse_tolerances(tolerance) if not isinstance(tolerance, Mapping) else dict(tolerance or {}), request.min_agreement)
    destination = Path(request.out) if request.out else Path.cwd() / f"{_stem(source)}-{to}"
    calibration_feeds = _calibration_feeds(registry, source, signature, calibration)
    opset = request.opset  # "17" from the command line is the opset 17 (torch.onnx takes an int; skl2onnx's parser both)
    options = ConvertOptions(
        opset=int(opset) if isinstance(opset, str) and opset.strip().isdigit() else opset,
        quantize=None if quantize == "auto" else quantize,  # auto quantizes after conversion: a converter that quantizes
        # while converting (TFLite) took "auto" for a mode and its artifact met no criterion (PluginError, exit 11)
        trust=trust,
        example={k: v[:4] for k, v in feeds.items()},
        calibration=calibration_feeds,
        plugin=plugin_options,
    )
    with staging_dir(destination, request.overwrite) as staging:
        step(f"converting {source.framework} -> {to}")
        artifact = _run_converter(conversion, source.model, signature, staging, options)
        quant, report, parent = Quantization(None, False), None, None
        if quantize and "quantized_in_conversion" in artifact.details:  # e.g. TorchScript int8: done while tracing
            done = artifact.details["quantized_in_conversion"]
            quant = Quantization(done["mode"], True, "", done["size_before"], path_size(artifact.path))
            parent = _parent_in_conversion(registry, conversion, source.model, signature, options, to, evidence, judge, trust, step)
        elif quantize == "auto":
            reconvert = partial(_run_converter, conversion, source.model, signature, options=options)
            artifact, quant, report = _quantize_auto(
                registry, to, artifact, conversion, calibration_feeds, evidence, judge, trust, step, reconvert
            )
        elif quantize:
            parent = _validate_parent(registry, to, artifact.path, evidence, judge, trust, step)
            step(f"quantizing ({quantize})")
            candidate, quant = _quantize(registry, to, artifact, quantize, calibration_feeds)
            artifact = _adopt(artifact, candidate)
        if report is None:
            step(f"validating in the {to} runtime")
            report = validate_artifact(registry, to, artifact.path, evidence, quant.mode if quant.applied else None, judge, trust)
            if parent is not None and quant.applied:
                report = with_parent(report, parent)
        report = _verdict(report, to, request.accept_mismatch, _failure_hint(report, to, quant, evidence, artifact.details))
        step("writing the package")
        manifest = _write_package(staging, registry, source, conversion, artifact, signature, feeds, quant, report, trust, to)
    return Package(destination.absolute(), manifest)


def _plugin_options(registry: PluginRegistry, conversion: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options this conversion declares; one no conversion from the source declares is a mistake worth saying
    (with several targets in one command, an option for one target is not an error for the others)."""
    declared = {name for (source, _), c in registry.conversions.items() if source == conversion.source for name in c.options}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise UsageError(
            f"no {conversion.source} converter takes the option {unknown[0]}",
            f"options of {conversion.source} converters: {', '.join(sorted(declared)) or 'none'}",
        )
    return {k: v for k, v in given.items() if k in conversion.options}


@dataclass(frozen=True)
class TargetResult:
    """One target of :func:`convert_each`: its package, or the error that target ended with."""

    target: str
    package: Package | None = None
    error: PackagerError | None = None


def convert_each(
    path: str | Path,
    targets: list[str],
    base: str | Path,
    *,
    trust: bool = False,
    model_class: str | None = None,
    task: str | None = None,
    progress: Progress | None = None,
    registry: PluginRegistry | None = None,
    **options: Any,
) -> list[TargetResult]:
    """``convert --to A --to B`` (or ``--to all``) through the Python API: the file is loaded once and each target is
    converted into ``base/TARGET`` (see ``submit_each``); ``options`` are ``convert``'s."""
    script = options.pop("script", False)
    plugin_options = {**({"script": True} if script else {}), **(options.pop("plugin_options", None) or {})}
    request = ConvertRequest(
        path=str(path),
        targets=tuple(targets),
        out=str(base),
        model_class=model_class,
        task=task,
        plugin_options=plugin_options,
        **options,
    )
    return submit_each(request, trust=trust, progress=progress, registry=registry)


def submit_each(
    request: ConvertRequest, *, trust: bool = False, progress: Progress | None = None, registry: PluginRegistry | None = None
) -> list[TargetResult]:
    """A request with several ``targets``: one sandbox child (unless ``trust``) loads the file once and writes every
    target's package; a target's failure is its result; a failure to load the file fails them all.
    Measured on the zoo: one child per target re-imported the framework and re-loaded the model every time (a Keras model
    to 8 targets: 8 TensorFlow start-ups of ~4 s)."""
    _check_quantize_args(request.quantize, request.calibration, registry or default_registry())
    request = local_request(request)
    if sandbox.confines(trust, registry):
        from packager import confined

        return [
            TargetResult(target, error=built) if isinstance(built, PackagerError) else TargetResult(target, package=Package(*built))
            for target, built in confined.convert_each(request, progress=progress)
        ]
    return run_convert_each(request, trust=trust, progress=progress, registry=registry)


def not_applicable(registry: PluginRegistry, source: Source, target: str) -> NotApplicable | None:
    """Why ``target`` is skipped by ``--to all`` for this model: the first hop's converter declares the models it takes
    (``@converts(applies=...)``) and this is not one. Measured: a LogisticRegression to all printed 5 refusals of this
    kind (lightgbm, lleaves, treelite, xgboost-json, xgboost-ubj), each several lines in the table."""
    first = registry.route(source.framework, target).hops[0]
    if first.applies is None or first.applies(source.model):
        return None
    return NotApplicable(
        f"{target} takes {first.applies_to} only, not {type(source.model).__name__}", f"skipped by --to all; --to {target} says why"
    )


def run_convert_each(
    request: ConvertRequest, *, trust: bool = False, progress: Progress | None = None, registry: PluginRegistry | None = None
) -> list[TargetResult]:
    """The convert worker (several targets): load once here, convert to each target under ``request.out``."""
    assert request.path is not None and request.out is not None  # built by convert_each / the CLI with a base folder
    registry = registry or default_registry()
    step = progress or (lambda message: None)
    step("loading the source model")
    source = load_source(
        request.path, trust=trust, model_class=request.model_class, registry=registry, task=request.task, lineage=request.lineage
    )
    results = []
    every = "all" in request.targets
    for target in registry.targets_of(source.framework) if every else request.targets:
        if every and (skipped := not_applicable(registry, source, target)) is not None:
            results.append(TargetResult(target, error=skipped))
            continue

        def target_step(message: str, t: str = target) -> None:
            step(f"{t}: {message}")

        try:
            one = replace(request, to=target, targets=(), out=str(Path(request.out) / target))
            if one.out is not None:
                check_destination(Path(one.out), one.overwrite)
            package = convert_source(source, one, trust=trust, progress=target_step, registry=registry)
            results.append(TargetResult(target, package=package))
        except PackagerError as exc:
            results.append(TargetResult(target, error=exc))
        except Exception as exc:  # a converter failing outside its boundary: this target's error, not the whole command's
            results.append(
                TargetResult(
                    target,
                    error=ConversionError(
                        f"{target}: {type(exc).__name__}: {first_line(exc)}",
                        "a defect in packager or the converter library; please report it",
                    ),
                )
            )
    return results


@dataclass(frozen=True)
class Judge:
    """The user's overrides of the format's criteria: ``--tolerance NAME=atol[,rtol]`` and ``--min-agreement``."""

    tolerances: Mapping[str, Criterion] = field(default_factory=dict)
    min_agreement: float | None = None

    def criterion(self, name: str, declared: Criterion) -> Criterion:
        chosen = self.tolerances.get(name, declared)
        return with_min_agreement(chosen, self.min_agreement) if self.min_agreement is not None else chosen


def _verdict(report: ValidationReport, to: str, accept_mismatch: bool, hint: str = "") -> ValidationReport:
    """A failed validation raises unless the user accepts it (recorded in the manifest)."""
    if report.status != "failed":
        return report
    if not accept_mismatch:
        raise ValidationFailed(
            f"the {to} artifact does not reproduce the source: " + "; ".join(report.failures()),
            hint or "--accept-mismatch keeps it anyway (recorded in the manifest)",
            report=report,
        )
    return replace(report, accepted_mismatch=True)


def _failure_hint(report: ValidationReport, to: str, quant: Quantization, evidence: Evidence, details: Mapping[str, Any]) -> str:
    """What to do about a failed verdict, from what failed: a difference the converter is known to make (the converter
    names it and the target that reproduces the model), an output judged as a kind it may not be, rows made up, a
    quantization the fp32 artifact does not need, or a converter that is off at full precision."""
    keep = "--accept-mismatch keeps it anyway (recorded in the manifest)"
    if report.status != "failed":
        return ""
    known = [str(d) for d in details.get("known_differences", ())]
    if known:
        return "; ".join(known) + f"; {keep}"
    hints = []
    for output in report.outputs:
        rule = evidence.kind_rules.get(output.name, "")
        if not output.passed and rule.startswith("values"):
            flag = f"--output-kind {output.name}=" + ("embedding" if output.kind == OutputKind.SCORES.value else "KIND")
            hints.append(
                f"{output.name} was judged as {output.kind} from its values alone: if it is an embedding or another kind, "
                f"say so with {flag}"
            )
    if any(not o.passed and "cannot judge" in o.note for o in report.outputs):  # the rows, not the converter
        hints.append("the verdict cannot judge on these rows: give --sample FILE with more rows, whose outputs differ")
    if evidence.data_source == "synthetic":
        hints.append("give --sample FILE with real rows (this check ran on synthetic inputs)")
    if quant.applied and report.parent.get("status") != "failed":
        hints.append("drop --quantize (the fp32 artifact passes) or use --quantize auto, which keeps the first mode that passes")
    elif not hints:
        hints.append(f"the {to} converter does not reproduce this model at full precision: try another --to (`packager formats`)")
    return "; ".join(hints + [keep])


def rejudge_parent(registry: PluginRegistry, source: Any, to: str, evidence: Evidence, judge: Any, trust: bool) -> ValidationReport:
    """The fp32 parent of a quantized package, converted again from ``source`` and judged on ``evidence``'s rows: a
    package records its parent's verdict on the rows ``convert`` saw, and ``validate --sample NEW`` on the int8 child
    alone passed where the fp32 parent fails on NEW (measured by an outside user: TF-IDF with sublinear_tf, fp32 exit 9,
    int8 exit 0 on the same rows)."""
    conversion = as_conversion(registry.route(source.framework, to))
    options = ConvertOptions(trust=trust, example={k: v[:4] for k, v in evidence.feeds.items()})
    silent = lambda message: None  # noqa: E731 - validate reports the verdict, not the steps (as convert without progress)
    return _parent_in_conversion(registry, conversion, source.model, evidence.signature, options, to, evidence, judge, trust, silent)


def _validate_parent(registry, to, path, evidence, judge, trust, step) -> ValidationReport:
    """The unquantized artifact under the fp32 criterion, before any quantized child is judged (``with_parent``)."""
    step(f"validating the fp32 parent in the {to} runtime")
    return validate_artifact(registry, to, path, evidence, None, judge, trust)


def _parent_in_conversion(registry, conversion, model, signature, options, to, evidence, judge, trust, step) -> ValidationReport:
    """A converter that quantizes while converting (TorchScript, TFLite int8) leaves no fp32 file: convert once more
    without quantization, in a folder of its own, to judge the parent."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="packager-parent-") as folder:
        step(f"converting the fp32 parent -> {to}")
        parent = _run_converter(conversion, model, signature, Path(folder), replace(options, quantize=None, calibration=None))
        return _validate_parent(registry, to, parent.path, evidence, judge, trust, step)


def _quantize_auto(registry, to, artifact, conversion, calibration_feeds, evidence, judge, trust, step, reconvert=None):
    """``--quantize auto``: the int8 modes the format offers (static only with calibration rows), then fp16; the first
    that passes validation with its own criteria is kept, else fp32 stays. Every attempt is recorded with its reason.
    The fp32 parent is judged first: when it fails its own criterion no quantized child is tried (it would carry the
    same error under a looser criterion). A mode the fp32 artifact has nothing for is tried on the form the converter
    writes for that mode (``reconvert``), as an explicit ``--quantize MODE`` does: auto recorded "not applicable (only
    LinearRegressor)" for a Ridge whose explicit int8 MatMul graph passes (outside user)."""
    quantizer = registry.quantizers.get(to)
    offered = (quantizer.modes if quantizer else frozenset()) & conversion.quantize
    modes = [m for m in ("dynamic", "static", "fp16") if m in offered and (m != "static" or calibration_feeds)]
    attempts, before = [], path_size(artifact.path)
    skipped = []
    parent = _validate_parent(registry, to, artifact.path, evidence, judge, trust, step) if modes else None
    if parent is not None and parent.status == "failed":
        why = parent_failure(parent.failures())
        attempts = [{"mode": m, "kept": False, "why": f"not tried: {why}"} for m in modes]
        return artifact, Quantization("auto", False, f"kept fp32 ({why})", before, before, tuple(attempts)), parent
    if "static" in offered and not calibration_feeds:
        skipped.append({"mode": "static", "kept": False, "why": "not tried: no --calibration rows"})
    for mode in modes:
        step(f"quantizing ({mode}, auto)")
        with tempfile.TemporaryDirectory(prefix=f".auto-{mode}-", dir=artifact.path.parent) as folder:
            tried = _auto_candidate(registry, to, artifact, mode, calibration_feeds, evidence, judge, trust, step, reconvert, Path(folder))
            if isinstance(tried, str):
                attempts.append({"mode": mode, "kept": False, "why": tried})
                continue
            candidate, quant, form_parent = tried
            step(f"validating {mode} in the {to} runtime")
            try:
                report = validate_artifact(registry, to, candidate.path, evidence, quant.mode, judge, trust)
            except PackagerError as exc:  # the candidate does not run (a GLM's per-channel int8 MatMul in onnxruntime 1.32)
                attempts.append({"mode": mode, "kept": False, "why": f"does not run: {errors.first_line(exc)[:300]}"})
                _discard(candidate.path)
                continue
            judged_parent = form_parent or parent
            report = with_parent(report, judged_parent) if judged_parent is not None else report
            if report.status == "failed":
                attempts.append({"mode": mode, "kept": False, "why": "failed validation: " + "; ".join(report.failures())})
                _discard(candidate.path)
                continue
            attempts.append({"mode": mode, "kept": True, "why": f"validation {report.status}"})
            return _adopt(artifact, candidate), replace(quant, attempts=tuple(attempts + skipped)), report
    step(f"validating in the {to} runtime")
    report = parent if parent is not None else validate_artifact(registry, to, artifact.path, evidence, None, judge, trust)
    offers = ", ".join(sorted(conversion.quantize))
    during = f"{to} is quantized while converting, which auto does not try: give --quantize {offers}" if offers else ""
    why = "; ".join(f"{a['mode']}: {a['why']}" for a in attempts + skipped) or during or "the format offers no quantization"
    return artifact, Quantization("auto", False, f"kept fp32 ({why})", before, before, tuple(attempts + skipped)), report


def _auto_candidate(registry, to, artifact, mode, calibration_feeds, evidence, judge, trust, step, reconvert, folder):
    """One mode's quantized candidate for auto, with the parent it must be judged against (None: the fp32 artifact),
    or the reason there is none. The fp32 artifact first; when it has nothing to quantize in this mode, the form the
    converter writes for ``--quantize MODE`` (converted into ``folder``), whose own fp32 verdict is its parent."""
    try:
        candidate, quant = _quantize(registry, to, artifact, mode, calibration_feeds)
    except (NotQuantizable, UnsupportedConversion) as exc:
        why = f"not applicable: {exc.what}"
    except PackagerError as exc:
        return f"quantizer failed: {exc.what}"
    else:
        if quant.applied:
            return candidate, quant, None
        why = quant.reason or "nothing to quantize"
    if reconvert is None or registry.quantizers.get(to) is None:
        return why
    step(f"converting the form --quantize {mode} takes -> {to}")
    try:
        form = reconvert(staging=folder, options=_for_mode(reconvert, mode))
    except PackagerError as exc:
        return f"{why}; the form for --quantize {mode} cannot be written: {exc.what}"
    if "quantized_in_conversion" in form.details:  # done while converting: its parent is the fp32 artifact
        done = form.details["quantized_in_conversion"]
        return form, Quantization(done["mode"], True, "", done["size_before"], path_size(form.path)), None
    try:  # quantized before its parent is judged: a form with nothing to quantize (a tree ensemble) costs no validation
        candidate, quant = _quantize(registry, to, form, mode, calibration_feeds)
    except PackagerError as exc:
        return f"{why}; its form for --quantize {mode}: {exc.what}"
    if not quant.applied:
        return f"{why}; its form for --quantize {mode}: {quant.reason or 'nothing to quantize'}"
    form_parent = _validate_parent(registry, to, form.path, evidence, judge, trust, step)
    if form_parent.status == "failed":
        return f"{why}; the fp32 form --quantize {mode} takes fails: " + "; ".join(form_parent.failures())
    return candidate, replace(quant, size_before=path_size(artifact.path)), form_parent


def _for_mode(reconvert, mode: str) -> Any:
    """The conversion options of ``reconvert`` (a partial of ``_run_converter``) with the converter told the mode."""
    return replace(reconvert.keywords["options"], quantize=mode)


def _discard(path: Path) -> None:
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def package_source(
    path: str | Path,
    out: str | Path,
    *,
    trust: bool = False,
    sample: Any = None,
    input_shape: str | None = None,
    model_class: str | None = None,
    registry: PluginRegistry | None = None,
    task: str | None = None,
) -> Package:
    """Package a source model file as it is (no conversion), so a registry can hold it as the root of a lineage.
    The file is loaded in the sandbox unless ``trust``; ``task`` is the head ``convert --task`` loaded the folder with."""
    resolved = resolve_source(path)  # models:/ and runs:/ are downloaded here, outside the sandbox
    request = PackageRequest(
        path=str(resolved.path),
        out=str(out),
        sample=sample,
        input_shape=input_shape,
        model_class=model_class,
        task=task,
        lineage=resolved.lineage,
    )
    if sandbox.confines(trust, registry):
        from packager import confined

        return Package(*confined.package_source(request))
    return run_package_source(request, trust=trust, registry=registry)


def run_package_source(request: PackageRequest, *, trust: bool = False, registry: PluginRegistry | None = None) -> Package:
    """The package worker: load the file here (static checks unless ``trust``) and copy it into a package."""
    from packager.safety.folders import copy_tree

    registry = registry or default_registry()
    path = Path(request.path)
    source = load_source(path, trust=trust, model_class=request.model_class, registry=registry, task=request.task, lineage=request.lineage)
    signature, feeds, _ = prepare_inputs(source, request.sample, request.input_shape, registry=registry)
    with staging_dir(Path(request.out), True) as staging:
        target = staging / path.name
        copy_tree(path, target)  # links, devices and FIFOs refused, never followed (issue 21 finding 1)
        write_json(staging / INPUT_EXAMPLE, input_example(feeds))
        framework = registry.framework(source.framework)
        manifest = Manifest(
            format=source.info.format or "unknown",
            model_file=path.name,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            source=source.info,
            signature=signature,
            quantization=Quantization(None, False),
            conversion={"converter": "none: the source model as given"},
            validation={
                "status": "source",
                "runtime": source.framework,
                "samples": 0,
                "outputs": [],
                "runtime_version": framework.versions().get(source.framework, ""),
            },
            versions={**framework.versions(), "packager": __version__},
            files=digest_files(staging),
            trusted_source=trust,
        )
        write_json(staging / MANIFEST, manifest.to_dict())
        write_mlmodel(staging, manifest)
    return Package(Path(request.out).absolute(), manifest)


def _stem(source: Source) -> str:
    return Path(source.info.file).stem if source.info.file else type(source.model).__name__.lower()


def calibrated(mode: str | None) -> bool:
    """A mode that sets int8 activation ranges from calibration rows: ``static`` and its variants (``static-*``, e.g. a
    plugin's ``static-bf16``). The convention every quantizer follows, so the checks here and optimize's --data split
    need no list of formats."""
    return bool(mode) and (mode == "static" or str(mode).startswith("static-"))


def _check_quantize_args(quantize: str | None, calibration: Any, registry: Any) -> None:
    modes = sorted(registry.quantize_modes() | {AUTO})  # what registered quantizers and quantizing converters offer
    if quantize and quantize not in modes:
        raise UsageError(f"unknown quantization mode {quantize!r}", f"choose one of {', '.join(modes)}")
    if calibrated(quantize) and calibration is None:
        raise UsageError(
            f"--quantize {quantize} needs calibration data", "pass --calibration FILE (.npy, .csv or .parquet rows like the model's input)"
        )
    if calibration is not None and not calibrated(quantize) and quantize != "auto":
        raise UsageError("--calibration is only used with --quantize static or auto", "add --quantize static or drop --calibration")


def _calibration_feeds(registry, source, signature, calibration) -> dict | None:
    if calibration is None:
        return None
    from packager.columns import align_table

    data = load_sample(calibration) if isinstance(calibration, (str, Path)) else calibration
    where = Path(calibration).name if isinstance(calibration, (str, Path)) else "the calibration rows"
    return registry.framework(source.framework).feeds(source.model, signature, align_table(signature, data, where))


def _quantize(registry, to, artifact, mode, calibration_feeds) -> tuple[Artifact, Quantization]:
    """The quantized artifact beside the fp32 one (``_adopt`` moves it into place once it is kept)."""
    quantizer = registry.quantizers.get(to)
    if quantizer is None:
        raise NotQuantizable(f"{to} artifacts cannot be quantized by packager", "drop --quantize")
    quantized = artifact.path.with_name(f"{artifact.path.stem}.{mode}{artifact.path.suffix}")
    before = path_size(artifact.path)
    result: QuantizeResult = quantizer.func(artifact.path, quantized, mode, calibration_feeds)
    if not result.applied:
        return artifact, Quantization(mode, False, result.reason, before, before)
    details = {**artifact.details, "quantization": dict(result.details)}
    return Artifact(quantized, details), Quantization(result.details.get("mode", mode), True, result.reason, before, path_size(quantized))


def _run_converter(conversion: Any, model: Any, signature: Signature, staging: Path, options: ConvertOptions) -> Artifact:
    """The converter plugin, held to its contract: our errors pass; anything else escaping it, or a result that is not an
    Artifact of a file it wrote in ``staging``, is the converter's defect and says so (not "the model is unusable")."""
    where = f"the {conversion.source} -> {conversion.target} converter {conversion.name}"
    hint = "a defect in the converter plugin: report it to its authors with --debug output (or try another --to)"
    try:
        artifact = conversion.func(model, signature, staging, options)
    except PackagerError:
        raise
    except Exception as exc:
        raise ConversionError(f"{where} failed: {type(exc).__name__}: {first_line(exc)}", hint) from exc
    if not isinstance(artifact, Artifact):
        raise PluginError(f"{where} returned {type(artifact).__name__}, not an Artifact", hint)
    path = Path(artifact.path)
    if not path.exists() or not _contains(staging, path):
        raise PluginError(f"{where} returned {path}, which is not a file it wrote in its output folder", hint)
    return artifact


def _contains(folder: Path, path: Path) -> bool:
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return path == folder or folder in path.parents


def _adopt(artifact: Artifact, candidate: Artifact) -> Artifact:
    """Put the kept quantized file where the fp32 one was (the package names one model file)."""
    if candidate.path == artifact.path:
        return artifact
    if artifact.path.is_dir():  # a folder format (.mlpackage, SavedModel): a rename cannot overwrite it
        import shutil

        shutil.rmtree(artifact.path)
    candidate.path.replace(artifact.path)
    return Artifact(artifact.path, candidate.details)


def validate_artifact(
    registry, fmt, path, evidence: Evidence, mode: str | None = None, judge: "Judge | None" = None, trust: bool = False
) -> ValidationReport:
    """Run ``path`` in the runtime registered for ``fmt`` on the evidence's rows and judge every output with the
    format's criterion for its kind and quantization ``mode``. A dynamic batch axis is run at two batch sizes (1 and
    the rest) and a dynamic sequence axis at a second length."""
    runtime = registry.runtime(fmt)
    if runtime is None:
        unknown = UnsupportedConversion(f"no runtime is registered for {fmt}", "install the plugin that runs this format")
        raise registry.missing(unknown, fmt)
    if not runtime.can_execute(path):
        return not_executed_report(runtime=runtime.name, runtime_version=runtime.version(), details=runtime.check(path, evidence.signature))
    judge = judge or Judge()
    table = registry.criteria(fmt)
    declared = {name: judge.criterion(name, criterion_for(table, fmt, kind, mode)) for name, kind in evidence.kinds.items()}
    criteria = {
        name: for_output(c, evidence.kinds[name], evidence.expected[name], evidence.scales.get(name)) for name, c in declared.items()
    }
    handle = runtime.load(path, trust=trust)
    signature, feeds = evidence.signature, evidence.feeds
    if getattr(runtime, "takes_source_input", False) and evidence.source_feeds is not None:
        # fed as ``predict`` will feed it: a runtime judged on float32 rows and run on float64 ones passed a forest
        # that was 4.66 off (treelite, found by an outside user)
        feeds = evidence.source_feeds
    actual, batch_sizes = _run_two_batches(runtime, handle, signature, feeds)
    # a format may drop auxiliary outputs (PMML: SVC probabilities); the first output is never optional
    optional = frozenset(list(evidence.expected)[1:]) if runtime.may_omit_auxiliary_outputs else frozenset()
    outputs = compare_outputs(evidence.expected, actual, criteria, evidence.kinds, optional, evidence.cast_expected)
    outputs += _second_length(runtime, handle, evidence, criteria)
    outputs = tuple(replace(o, kind_rule=evidence.kind_rules.get(o.name.split("@len=")[0], "")) for o in outputs)
    details = dict(runtime.details(handle))
    return build_report(
        outputs,
        runtime=runtime.name,
        runtime_version=runtime.version(),
        samples=evidence.rows,
        data_source=evidence.data_source,
        criteria=criteria,
        details=details,
        batch_sizes=batch_sizes,
    )


def _run_two_batches(runtime, handle, signature, feeds) -> tuple[dict, tuple[int, ...]]:
    """The artifact on row 0 alone and on the other rows as one batch, joined: every row is compared, and a batch
    axis declared dynamic but fixed by the converter fails here instead of in production."""
    import numpy as np

    rows = len(next(iter(feeds.values())))
    if rows < 2:
        return runtime.predict(handle, signature, feeds), (rows,)
    first = runtime.predict(handle, signature, {k: v[:1] for k, v in feeds.items()})
    rest = runtime.predict(handle, signature, {k: v[1:] for k, v in feeds.items()})
    joined = {}
    for name, b in rest.items():
        a, b = np.asarray(first.get(name)), np.asarray(b)
        if name in first and a.ndim == b.ndim - 1:
            a = a[None]  # a runtime that drops the batch axis of a single row
        joined[name] = np.concatenate([a, b]) if name in first and a.ndim == b.ndim and a.shape[1:] == b.shape[1:] else a
    return joined, (1, rows - 1)


def _second_length(runtime, handle, evidence: Evidence, criteria) -> tuple:
    """For inputs with a dynamic axis beyond the batch (a sequence length): the source and the artifact again on the
    inputs cut to half that length, compared with the same criteria (outputs named ``NAME@len=L``)."""
    from packager.validation import compare_outputs as compare

    dynamic = {s.name: [i for i, d in enumerate(s.shape) if i and d is None] for s in evidence.signature.inputs}
    dynamic = {name: axes for name, axes in dynamic.items() if axes and name in evidence.feeds}
    if not dynamic:
        return ()
    cut = {}
    for name, array in evidence.feeds.items():
        for axis in dynamic.get(name, []):
            length = array.shape[axis]
            if length < 2:
                return ()
            array = array.take(range(max(1, length // 2)), axis=axis)
        cut[name] = array
    length = max(1, next(evidence.feeds[n].shape[a] for n, axes in dynamic.items() for a in axes) // 2)
    expected = evidence.source_predict(cut)
    actual = runtime.predict(handle, evidence.signature, cut)

    def renamed(d: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{k}@len={length}": v for k, v in d.items()}

    return compare(renamed(expected), renamed(actual), renamed(criteria), renamed(evidence.kinds))


def _write_package(staging, registry, source, conversion, artifact, signature, feeds, quant, report, trust, to) -> Manifest:
    runtime = registry.runtime(to)
    framework = registry.framework(source.framework)
    versions = {**framework.versions(), **(runtime.versions() if runtime else {}), "packager": __version__}
    write_json(staging / INPUT_EXAMPLE, input_example(feeds))
    provider = registry.provider(to)  # a third-party format runs only where its plugin is installed
    requirements = [
        *(runtime.requirements() if runtime else []),
        *([f"{provider['distribution']}=={provider['version']}"] if provider else []),
    ]
    (staging / REQUIREMENTS).write_text("\n".join(requirements) + "\n")
    files = digest_files(staging)
    manifest = Manifest(
        format=to,
        model_file=artifact.path.name,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source=source.info,
        signature=signature,
        quantization=quant,
        conversion={
            "converter": conversion.name,
            "title": registry.format(to).title or to,
            **({"plugin": provider} if provider else {}),
            **artifact.details,
        },
        validation=report.to_dict(),
        versions=versions,
        files=files,
        trusted_source=trust,
        accepted_mismatch=report.accepted_mismatch,
    )
    write_json(staging / MANIFEST, manifest.to_dict())
    write_mlmodel(staging, manifest)
    return manifest
