"""``inspect`` (what is this file?) and ``validate`` (does this artifact reproduce that source?)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager import sandbox
from packager.errors import reading
from packager.formats import FORMATS, detect_format
from packager.package import MANIFEST, path_size
from packager.plugins import PluginRegistry, default_registry
from packager.validation import ValidationReport, Tolerance, tolerance_for


def inspect(path: str | Path, *, trust: bool = False, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """Format, size, and what the format's runtime or the source framework can tell about the file.
    Read in the sandbox unless ``trust``."""
    from packager.safety import check_file

    if sandbox.confines(trust, registry):
        from packager import confined

        return confined.inspect(path)
    registry = registry or default_registry()
    path = Path(path)
    fmt = detect_format(path)
    if not trust:
        check_file(path, fmt)
    info: dict[str, Any] = {"file": str(path), "format": fmt, "title": FORMATS[fmt].title if fmt in FORMATS else fmt, "size": path_size(path)}
    runtime = registry.runtime(fmt)
    if runtime is not None and hasattr(runtime, "inspect"):
        with reading(f"{path.name} ({fmt})"):
            info.update(runtime.inspect(path))
    if any(fmt in p.cls.file_formats for p in registry.frameworks.values()):
        from packager.conversion import load_source, prepare_inputs

        source = load_source(path, trust=trust, registry=registry)
        signature, _, _ = prepare_inputs(source, registry=registry)
        info.update({"framework": source.framework, "model_class": source.info.model_class, **source.info.details, "signature": signature.to_dict()})
    return info


def validate(artifact: str | Path, source: Any, *, sample: Any = None, quantization: str | None = None, atol: float | None = None, rtol: float | None = None, trust: bool = False, registry: PluginRegistry | None = None) -> ValidationReport:
    """Run ``artifact`` in its runtime on sample inputs and compare with ``source``'s own outputs.

    The quantization mode (and so the tolerance) is read from the package manifest next to the
    artifact when there is one; ``atol``/``rtol`` override it. Both files are run in the sandbox unless
    ``trust``; a manifest's ``trusted_source`` never counts as trust.
    """
    from packager.conversion import load_source, prepare_inputs, validate_artifact
    from packager.safety import check_file

    if isinstance(source, (str, Path)) and sandbox.confines(trust, registry):
        from packager import confined

        return confined.validate(artifact, source, sample=sample, quantization=quantization, atol=atol, rtol=rtol)
    registry = registry or default_registry()
    artifact = Path(artifact)
    if artifact.is_dir() and (artifact / MANIFEST).is_file():
        manifest = json.loads((artifact / MANIFEST).read_text())
        artifact = artifact / manifest["model_file"]
    manifest_path = artifact.parent / MANIFEST
    if quantization is None and manifest_path.is_file():
        quant = json.loads(manifest_path.read_text()).get("quantization", {})
        quantization = quant.get("mode") if quant.get("applied") else None
    fmt = detect_format(artifact)
    if not trust:
        check_file(artifact, fmt)
    loaded = load_source(source, trust=trust, registry=registry)
    signature, feeds, expected = prepare_inputs(loaded, sample, registry=registry)
    labels = registry.framework(loaded.framework).label_outputs(loaded.model)
    base = tolerance_for(fmt, quantization)
    tolerance = Tolerance(atol if atol is not None else base.atol, rtol if rtol is not None else base.rtol, base.min_label_agreement)
    return validate_artifact(registry, fmt, artifact, signature, feeds, expected, tolerance, labels, trust)
