"""``inspect`` (what is this file?) and ``validate`` (does this artifact reproduce that source?)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager import sandbox
from packager.errors import reading
from packager.formats import detect_format
from packager.heap import frozen_while
from packager.package import MANIFEST, path_size
from packager.plugins import PluginRegistry, default_registry
from packager.requests import InspectRequest, ValidateRequest
from packager.validation import ValidationReport


def inspect(
    path: str | Path,
    *,
    trust: bool = False,
    sample: Any = None,
    input_shape: str | None = None,
    model_class: str | None = None,
    dynamic_axes: str | None = None,
    registry: PluginRegistry | None = None,
) -> dict[str, Any]:
    """Format, size, and what the format's runtime or the source framework can tell about the file.

    ``sample``, ``input_shape``, ``model_class`` and ``dynamic_axes`` build the signature as in ``convert``.
    Without them, a model that needs them (a torch file has no shapes, a state dict no code) is
    described as far as it can be, with a ``note`` naming the option to add, instead of failing.
    Read in the sandbox unless ``trust``."""
    request = InspectRequest(path=str(path), sample=sample, input_shape=input_shape, model_class=model_class, dynamic_axes=dynamic_axes)
    return submit_inspect(request, trust=trust, registry=registry)


def submit_inspect(request: InspectRequest, *, trust: bool = False, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """Run an inspect request where it must run: the inspect worker in a sandbox child unless ``trust``."""
    from packager.conversion import local_request

    request = local_request(request)  # models:/ and runs:/ are downloaded here, outside the sandbox
    if sandbox.confines(trust, registry):
        from packager import confined

        return confined.inspect(request)
    return run_inspect(request, trust=trust, registry=registry)


def run_inspect(request: InspectRequest, *, trust: bool = False, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """The inspect worker: read the file here, with the static checks unless ``trust``."""
    from packager.errors import UsageError
    from packager.safety import check_file

    registry = registry or default_registry()
    path = Path(request.path)
    sample, input_shape, model_class, dynamic_axes = request.sample, request.input_shape, request.model_class, request.dynamic_axes
    fmt = detect_format(path, registry)
    if not trust:
        check_file(path, fmt, registry)
    info: dict[str, Any] = {"file": str(path), "format": fmt, "title": registry.format(fmt).title or fmt, "size": path_size(path)}
    runtime = registry.runtime(fmt)
    if runtime is not None:
        with reading(f"{path.name} ({fmt})"):
            info.update(runtime.inspect(path))
    if registry.loads_as_source(fmt):
        from packager.conversion import gather_evidence, load_source

        given = sample is not None or input_shape or model_class or dynamic_axes
        try:
            source = load_source(path, trust=trust, model_class=model_class, registry=registry, lineage=request.lineage)
            info.update({"framework": source.framework, "model_class": source.info.model_class, **source.info.details})
            evidence = gather_evidence(source, sample, input_shape, registry, dynamic_axes)
            info["signature"] = evidence.signature.to_dict()
            if sample is not None:  # the kinds on the user's rows, as convert's validation decides them (optimize's budget)
                info["output_kinds"] = {name: kind.value for name, kind in evidence.kinds.items()}
        except UsageError as exc:
            if given:
                raise
            info["note"] = f"{exc.what}; {exc.hint}" if exc.hint else exc.what
    return info


def validate(
    artifact: str | Path,
    source: Any,
    *,
    sample: Any = None,
    quantization: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    tolerance: Any = None,
    min_agreement: float | None = None,
    output_kind: Any = None,
    trust: bool = False,
    registry: PluginRegistry | None = None,
) -> ValidationReport:
    """Run ``artifact`` in its runtime and judge it against ``source``'s own outputs with the format's criteria.

    The quantization mode (and so the criteria) is read from the package manifest next to the artifact when there is
    one. Rows: ``sample``; else the package's input example when the package was validated on real rows; else rows
    from the fitted model's statistics; else synthetic (said so in the report). ``atol``/``rtol`` pin every numeric
    output to that tolerance; ``tolerance`` (``NAME=atol[,rtol]``) pins one output. Both files are run in
    the sandbox unless ``trust``; a manifest's ``trusted_source`` never counts as trust.
    """
    request = ValidateRequest(
        artifact=str(artifact),
        source=str(source) if isinstance(source, (str, Path)) else "",
        sample=sample,
        quantization=quantization,
        atol=atol,
        rtol=rtol,
        tolerance=tolerance,
        min_agreement=min_agreement,
        output_kind=output_kind,
    )
    if not isinstance(source, (str, Path)):  # a model object: validated here (it cannot cross into a sandbox)
        return run_validate(request, trust=trust, registry=registry, loaded_source=source)
    return submit_validate(request, trust=trust, registry=registry)


def submit_validate(request: ValidateRequest, *, trust: bool = False, registry: PluginRegistry | None = None) -> ValidationReport:
    """Run a validate request where it must run: the validate worker in a sandbox child unless ``trust``."""
    from dataclasses import replace

    from packager.sources import local_source

    resolved = local_source(request.source) if request.source is not None else None
    if resolved is not None and str(resolved) != str(request.source):  # models:/, runs:/ downloaded outside the sandbox
        request = replace(request, source=str(resolved))
    if sandbox.confines(trust, registry):
        from packager import confined

        report: ValidationReport = confined.validate(request)
        return report
    return run_validate(request, trust=trust, registry=registry)


@frozen_while
def run_validate(
    request: ValidateRequest, *, trust: bool = False, registry: PluginRegistry | None = None, loaded_source: Any = None
) -> ValidationReport:
    """The validate worker: both files read here, with the static checks unless ``trust``."""
    from packager.conversion import Judge, gather_evidence, load_source, validate_artifact
    from packager.package import INPUT_EXAMPLE, check_model_file
    from packager.safety import check_file, formats_to_check
    from packager.validation import OutputKind, Tolerance, parse_output_kinds, parse_tolerances

    registry = registry or default_registry()
    artifact = Path(request.artifact)
    source = loaded_source if loaded_source is not None else request.source
    sample, quantization, atol, rtol = request.sample, request.quantization, request.atol, request.rtol
    tolerance, min_agreement, output_kind = request.tolerance, request.min_agreement, request.output_kind
    if artifact.is_dir() and (artifact / MANIFEST).is_file():
        manifest = json.loads((artifact / MANIFEST).read_text())
        artifact = artifact / check_model_file(manifest.get("model_file"))
    manifest_path = artifact.parent / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if quantization is None and manifest:
        quant = manifest.get("quantization", {})
        quantization = quant.get("mode") if quant.get("applied") else None
    example = None
    example_path = artifact.parent / INPUT_EXAMPLE
    if sample is None and example_path.is_file() and manifest.get("validation", {}).get("data_source") in ("sample", "calibration"):
        import numpy as np

        example = {k: np.asarray(v) for k, v in json.loads(example_path.read_text()).items()}
    # a package's manifest names its format (a forest.npz is a zip to content sniffing: validate refused every forest
    # package, found by an outside user); the checks below judge the content as what it is and as what is claimed
    claimed = manifest.get("format")
    fmt = claimed if isinstance(claimed, str) and registry.runtime(claimed) is not None else detect_format(artifact, registry)
    if not trust:  # the artifact is a file the user gave, as untrusted as the source: what the content is, then the claim
        for checked in formats_to_check(artifact, fmt, registry):
            check_file(artifact, checked, registry)
    loaded = load_source(source, trust=trust, registry=registry)
    kinds = parse_output_kinds(output_kind) if not isinstance(output_kind, dict) else output_kind
    evidence = gather_evidence(loaded, sample, registry=registry, example=example, output_kinds=kinds)
    pinned = parse_tolerances(tolerance) if not isinstance(tolerance, dict) else dict(tolerance)
    if atol is not None or rtol is not None:
        numeric = [n for n, k in evidence.kinds.items() if k not in (OutputKind.LABELS, OutputKind.INTEGER)]
        pinned = {**{n: Tolerance(atol or 0.0, rtol or 0.0, 0.0) for n in numeric}, **pinned}
    judge = Judge(pinned, min_agreement)
    report = validate_artifact(registry, fmt, artifact, evidence, quantization, judge, trust)
    if quantization:
        return _with_parent_here(report, registry, loaded, fmt, evidence, judge, trust, manifest)
    return report


def _with_parent_here(report: Any, registry: Any, loaded: Any, fmt: str, evidence: Any, judge: Any, trust: bool, manifest: dict) -> Any:
    """A quantized artifact's verdict on these rows needs its fp32 parent's on the same rows: converted again from the
    source and judged here. Where the source cannot reach the format again (another plugin set), the parent's verdict
    recorded at convert is the one there is, and a recorded failure still fails the child."""
    from dataclasses import replace

    from packager.conversion import rejudge_parent
    from packager.errors import PackagerError
    from packager.validation import with_parent

    try:
        return with_parent(report, rejudge_parent(registry, loaded, fmt, evidence, judge, trust))
    except PackagerError:
        recorded = manifest.get("validation", {}).get("parent") or {}
        return replace(report, status="failed", parent=recorded) if recorded.get("status") == "failed" else report
