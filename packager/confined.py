"""The parent side of each operation that opens an untrusted file: what it sends into the sandbox and gets back
(``packager.sandbox`` spawns the child, ``packager.workers`` executes the request there).

One function per operation. It takes the operation's request (``packager.requests``), binds what the child must read
(read-only), writes rows given in memory as files, gives the child a workspace beside the output, sends the request as
JSON, and after the child succeeded checks what it wrote and renames it into place. It returns plain values (paths,
manifests, dicts), not the operations' result types: this module imports none of the operation modules, so the public
functions can call it without an import cycle (conversion, confined, inference, inspection, bench and the registry
formed one when the child re-entered the public functions). It imports no ML framework: the parent only delegates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from packager import sandbox
from packager.errors import PackagerError
from packager.package import Manifest, _replace, check_destination
from packager.requests import (
    BenchRequest,
    CheckRequest,
    ConvertRequest,
    InspectRequest,
    PackageRequest,
    PredictRequest,
    ValidateRequest,
    to_data,
)


def _name(path: Any) -> str:
    return Path(str(path)).name


def convert(request: ConvertRequest, *, progress: Callable[[Any], None] | None = None) -> tuple[Path, Manifest]:
    """The whole pipeline (load, convert, quantize, validate, write) runs in the child, which writes the package into the
    workspace; the parent renames it to the destination. Returns the destination and the package's manifest."""
    assert request.path is not None  # only files cross into the sandbox
    path = Path(request.path)
    destination = (Path(request.out) if request.out else Path.cwd() / f"{path.stem}-{request.to}").absolute()
    check_destination(destination, request.overwrite)
    with sandbox.workspace(destination.parent, destination.name) as ws:
        target = ws.out / "package"
        sent = replace(
            request,
            path=str(path.absolute()),
            out=str(target),
            overwrite=True,
            sample=ws.data("sample", request.sample),
            calibration=ws.data("calibration", request.calibration),
            tolerance=_plain_tolerance(request.tolerance),
        )
        result = ws.call(
            "convert", to_data(sent), label=f"converting {path.name}", reads=[path, request.sample, request.calibration], progress=progress
        )
        manifest = _manifest(result)
        sandbox.check_output(target)
        _replace(target, destination)
    return destination, manifest


def convert_each(
    request: ConvertRequest, *, progress: Callable[[Any], None] | None = None
) -> list[tuple[str, tuple[Path, Manifest] | PackagerError]]:
    """A request with several targets: one child loads the file once and writes every target's package into the
    workspace; the parent checks each and renames it to ``out/TARGET``. Errors come back per target, as data."""
    assert request.path is not None and request.out is not None
    path, base = Path(request.path), Path(request.out).absolute()
    for target in request.targets:  # before the work, as for one target (with "all" the targets are known only after loading)
        if target != "all":
            check_destination(base / target, request.overwrite)
    base.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, tuple[Path, Manifest] | PackagerError]] = []
    with sandbox.workspace(base, path.stem) as ws:
        sent = replace(
            request,
            path=str(path.absolute()),
            out=str(ws.out / "packages"),
            overwrite=True,
            sample=ws.data("sample", request.sample),
            calibration=ws.data("calibration", request.calibration),
            tolerance=_plain_tolerance(request.tolerance),
        )
        reads = [path, request.sample, request.calibration]
        answers = ws.call("convert", to_data(sent), label=f"converting {path.name}", reads=reads, progress=progress)
        if not isinstance(answers, list):
            raise sandbox.InputFileError(
                f"the sandboxed conversion of {path.name} gave no list of targets", "the file is not a usable model"
            )
        for answer in answers:
            target = str(answer.get("target", "?")) if isinstance(answer, dict) else "?"
            try:
                if not isinstance(answer, dict) or "error" in answer or not _plain_name(target):
                    raise sandbox._rebuild_error(answer.get("error") if isinstance(answer, dict) else None, f"converting to {target}")
                manifest = _manifest(answer)
                built, destination = ws.out / "packages" / target, base / target
                sandbox.check_output(built)
                check_destination(destination, request.overwrite)
                _replace(built, destination)
                results.append((target, (destination, manifest)))
            except PackagerError as exc:
                results.append((target, exc))
    return results


def _plain_name(target: str) -> bool:
    """A target name from the child becomes a folder name: a plain name only (never ``..`` or a path)."""
    return bool(target) and target not in (".", "..") and "/" not in target and "\\" not in target and "\0" not in target


def _plain_tolerance(tolerance: Any) -> Any:
    """The API's ``tolerance={output: Criterion}`` as JSON for the child (CLI strings pass as they are)."""
    if isinstance(tolerance, Mapping):
        from packager.validation import criterion_to_dict

        return {"criteria": {str(k): criterion_to_dict(v) for k, v in tolerance.items()}}
    return tolerance


def package_source(request: PackageRequest) -> tuple[Path, Manifest]:
    """A source file packaged as it is (``convert --push`` packages the source this way)."""
    path, destination = Path(request.path), Path(request.out).absolute()
    with sandbox.workspace(destination.parent, destination.name) as ws:
        target = ws.out / "package"
        sent = replace(request, path=str(path.absolute()), out=str(target), sample=ws.data("sample", request.sample))
        manifest = _manifest(ws.call("package", to_data(sent), label=f"packaging {path.name}", reads=[path, request.sample]))
        sandbox.check_output(target)
        _replace(target, destination)
    return destination, manifest


def check(path: str | Path, fmt: str) -> None:
    """``safety.check_file`` in the sandbox: the static checks parse the file (protobuf, HDF5, zip) before any load."""
    path = Path(path)
    with sandbox.workspace() as ws:
        ws.call("check", to_data(CheckRequest(path=str(path.absolute()), fmt=fmt)), label=f"checking {path.name}", reads=[path])


def inspect(request: InspectRequest) -> dict[str, Any]:
    path = Path(request.path)
    with sandbox.workspace() as ws:
        sent = replace(request, path=str(path.absolute()), sample=ws.data("sample", request.sample))
        info = ws.call("inspect", to_data(sent), label=f"inspecting {path.name}", reads=[path, request.sample])
    if not isinstance(info, dict):
        raise sandbox.InputFileError(f"the sandboxed inspection of {path.name} gave no description", "the file is not a usable model")
    return {**info, "file": request.path}


def validate(request: ValidateRequest) -> Any:
    """The child's ValidationReport, rebuilt here."""
    from packager.validation import ValidationReport

    artifact, source = Path(request.artifact), Path(request.source)
    with sandbox.workspace() as ws:
        sent = replace(
            request,
            artifact=str(artifact.absolute()),
            source=str(source.absolute()),
            sample=ws.data("sample", request.sample),
            tolerance=_plain_tolerance(request.tolerance),
        )
        label = f"validating {artifact.name} against {source.name}"
        result = ws.call("validate", to_data(sent), label=label, reads=[artifact, source, request.sample])
    return _checked(lambda: ValidationReport.from_dict(result), f"validating {artifact.name}")


def predict(request: PredictRequest, *, label: str, progress: Callable[[Any], None] | None = None) -> dict[str, float]:
    """The whole streamed prediction runs in the child: the model (a package folder or a file, a registry reference
    already pulled by the parent) and the input are bound read-only; the output file is written in the workspace and
    renamed into place after the child succeeded. Returns rows, batches, seconds and load_seconds."""
    output, model = Path(request.output).absolute(), Path(request.model).absolute()
    with sandbox.workspace(output.parent, output.name) as ws:
        target = ws.out / output.name
        sent = replace(request, model=str(model), data=str(Path(request.data).absolute()), output=str(target), overwrite=True)
        share_built_code(ws, model)
        result = ws.call("predict", to_data(sent), label=f"predicting with {label}", reads=[model, request.data], progress=progress)
        sandbox.check_output(target)
        os.replace(target, output)
    return _checked(lambda: {k: float(result[k]) for k in ("rows", "batches", "seconds", "load_seconds")}, f"predicting with {label}")


def bench(request: BenchRequest) -> dict[str, Any]:
    """One ``packager bench`` measurement in a fresh confined child, as the worker's dict (``bench.ArtifactBench``)."""
    path = Path(request.path)
    with sandbox.workspace() as ws:
        sent = replace(request, path=str(path.absolute()), data=str(Path(request.data).absolute()))
        if request.kind != "baseline":
            share_built_code(ws, path)
        result = ws.call("bench", to_data(sent), label=f"benchmarking {path.name}", reads=[path, request.data])
    return _checked(lambda: dict(result), f"benchmarking {path.name}")


def share_built_code(ws: sandbox.Workspace, model: Path) -> None:
    """What the package's runtime builds at load (a compiled tree ensemble: minutes of gcc for 200 deep trees, every
    sandboxed bench child built it again) is built here, once, and shown to the child read-only
    (``Runtime.shared_with_child``). A package that fails its checks shares nothing: the child meets the same error and
    reports it as its own."""
    from packager.package import MANIFEST, read_manifest
    from packager.plugins import default_registry

    folder = model if model.is_dir() else model.parent
    if not (folder / MANIFEST).is_file():
        return  # a bare file: the formats that build code are known by their manifest only
    try:
        manifest = read_manifest(folder)
        runtime = default_registry().runtime(manifest.format)
        shared = runtime.shared_with_child(folder / manifest.model_file) if runtime is not None else []
    except PackagerError:
        return
    for built in shared:
        ws.share(built)


def _manifest(result: Any) -> Manifest:
    return _checked(lambda: Manifest.from_dict(result["manifest"]), "reading the package manifest")


def _checked(build: Callable[[], Any], label: str) -> Any:
    """A child's answer is data from a process that ran untrusted code: malformed means refused, not a traceback."""
    try:
        return build()
    except (KeyError, TypeError, ValueError) as exc:
        raise sandbox.InputFileError(
            f"the sandboxed model process gave a malformed answer while {label} ({type(exc).__name__})",
            "the file is not a usable model; nothing was kept",
        ) from None
