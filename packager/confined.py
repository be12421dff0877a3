"""What each public API call sends into the sandbox and gets back (see ``packager.sandbox``).

Parent side: one function per call that opens an untrusted file. It binds what the child must read
(read-only), gives it a workspace beside the output, and after the child succeeded checks what it wrote
and renames it into place. It imports no ML framework: the parent only delegates.

Child side (``CHILD_CALLS``): the same public API functions, called inside the child, where they do the
work with the static checks on (``trust`` is True only with the test-only switch, in a confined child).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from packager import sandbox


def _name(path: Any) -> str:
    return Path(str(path)).name


# ---------------------------------------------------------------- parent side


def convert(
    path: str | Path,
    to: str,
    *,
    out: str | Path | None,
    overwrite: bool,
    progress: Callable | None,
    sample: Any,
    calibration: Any,
    **options: Any,
) -> Any:
    """``conversion.convert`` of a file: the whole pipeline (load, convert, quantize, validate, write) runs in
    the child, which writes the package into the workspace; the parent renames it into place."""
    from packager.conversion import Package
    from packager.package import _replace, check_destination

    path = Path(path)
    destination = (Path(out) if out else Path.cwd() / f"{path.stem}-{to}").absolute()
    check_destination(destination, overwrite)
    with sandbox.workspace(destination.parent, destination.name) as ws:
        target = ws.out / "package"
        args = {
            "path": str(path.absolute()),
            "to": to,
            "out": str(target),
            "sample": ws.data("sample", sample),
            "calibration": ws.data("calibration", calibration),
            **_plain_tolerance(options),
        }
        result = ws.call("convert", args, label=f"converting {path.name}", reads=[path, sample, calibration], progress=progress)
        manifest = _manifest(result)
        sandbox.check_output(target)
        _replace(target, destination)
    return Package(destination, manifest)


def convert_each(
    path: str | Path,
    targets: list[str],
    base: str | Path,
    *,
    progress: Callable | None,
    model_class: str | None,
    overwrite: bool = False,
    sample: Any = None,
    calibration: Any = None,
    **options: Any,
) -> list[Any]:
    """``conversion.convert_each`` of a file: one child loads it once and writes every target's package into the
    workspace; the parent checks each and renames it to ``base/TARGET``. Errors come back per target, as data."""
    from packager.conversion import Package, TargetResult
    from packager.errors import PackagerError
    from packager.package import _replace, check_destination

    path, base = Path(path), Path(base).absolute()
    for target in targets:  # before the work, as for one target (with "all" the targets are known only after loading)
        if target != "all":
            check_destination(base / target, overwrite)
    base.mkdir(parents=True, exist_ok=True)
    results = []
    with sandbox.workspace(base, path.stem) as ws:
        args = {
            "path": str(path.absolute()),
            "targets": list(targets),
            "base": str(ws.out / "packages"),
            "model_class": model_class,
            "sample": ws.data("sample", sample),
            "calibration": ws.data("calibration", calibration),
            **_plain_tolerance(options),
        }
        answers = ws.call("convert_each", args, label=f"converting {path.name}", reads=[path, sample, calibration], progress=progress)
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
                check_destination(destination, overwrite)
                _replace(built, destination)
                results.append(TargetResult(target, package=Package(destination, manifest)))
            except PackagerError as exc:
                results.append(TargetResult(target, error=exc))
    return results


def _plain_name(target: str) -> bool:
    """A target name from the child becomes a folder name: a plain name only (never ``..`` or a path)."""
    return bool(target) and target not in (".", "..") and "/" not in target and "\\" not in target and "\0" not in target


def _plain_tolerance(options: dict[str, Any]) -> dict[str, Any]:
    """The API's ``tolerance={output: Criterion}`` as JSON for the child (CLI strings pass as they are)."""
    from collections.abc import Mapping

    from packager.validation import criterion_to_dict

    tolerance = options.get("tolerance")
    if isinstance(tolerance, Mapping):
        return {**options, "tolerance": {"criteria": {str(k): criterion_to_dict(v) for k, v in tolerance.items()}}}
    return options


def package_source(
    path: str | Path, out: str | Path, *, sample: Any, input_shape: str | None, model_class: str | None, task: str | None = None
) -> Any:
    """``conversion.package_source`` of an untrusted file (``convert --push`` packages the source this way)."""
    from packager.conversion import Package
    from packager.package import _replace

    path, destination = Path(path), Path(out).absolute()
    with sandbox.workspace(destination.parent, destination.name) as ws:
        target = ws.out / "package"
        args = {
            "path": str(path.absolute()),
            "out": str(target),
            "sample": ws.data("sample", sample),
            "input_shape": input_shape,
            "model_class": model_class,
            **({"task": task} if task else {}),
        }
        manifest = _manifest(ws.call("package_source", args, label=f"packaging {path.name}", reads=[path, sample]))
        sandbox.check_output(target)
        _replace(target, destination)
    return Package(destination, manifest)


def check(path: str | Path, fmt: str) -> None:
    """``safety.check_file`` in the sandbox: the static checks parse the file (protobuf, HDF5, zip) before any load."""
    path = Path(path)
    with sandbox.workspace() as ws:
        ws.call("check", {"path": str(path.absolute()), "fmt": fmt}, label=f"checking {path.name}", reads=[path])


def inspect(path: str | Path, *, sample: Any = None, **options: Any) -> dict[str, Any]:
    path = Path(path)
    with sandbox.workspace() as ws:
        args = {"path": str(path.absolute()), "sample": ws.data("sample", sample), **options}
        info = ws.call("inspect", args, label=f"inspecting {path.name}", reads=[path, sample])
    if not isinstance(info, dict):
        raise sandbox.InputFileError(f"the sandboxed inspection of {path.name} gave no description", "the file is not a usable model")
    return {**info, "file": str(path)}


def validate(
    artifact: str | Path,
    source: str | Path,
    *,
    sample: Any,
    quantization: str | None,
    atol: float | None,
    rtol: float | None,
    **options: Any,
) -> Any:
    from packager.validation import ValidationReport

    artifact, source = Path(artifact), Path(source)
    with sandbox.workspace() as ws:
        args = {
            "artifact": str(artifact.absolute()),
            "source": str(source.absolute()),
            "sample": ws.data("sample", sample),
            "quantization": quantization,
            "atol": atol,
            "rtol": rtol,
            **options,
        }
        result = ws.call("validate", args, label=f"validating {artifact.name} against {source.name}", reads=[artifact, source, sample])
    return _checked(lambda: ValidationReport.from_dict(result), f"validating {artifact.name}")


def predict(
    artifact: Any,
    data: str | Path,
    output: str | Path,
    *,
    batch_size: int,
    threads: int | None,
    outputs: list[str] | None,
    overwrite: bool,
    progress: Callable | None,
    text_column: str | None = None,
    keep_columns: list[str] | None = None,
) -> Any:
    """The whole streamed prediction runs in the child: the model (a package folder or a file, a registry
    reference already pulled by the parent) and the input are bound read-only; the output file is written
    in the workspace and renamed into place after the child succeeded."""
    from packager.batches import OutputWriter
    from packager.inference import PredictResult

    output = Path(output).absolute()
    OutputWriter(output, overwrite)  # an unsupported suffix or an existing output fails here, before any work
    model = artifact.path.parent if artifact.manifest is not None else artifact.path
    label = artifact.label or artifact.path.name
    with sandbox.workspace(output.parent, output.name) as ws:
        target = ws.out / output.name
        args = {
            "model": str(model.absolute()),
            "data": str(Path(data).absolute()),
            "output": str(target),
            "batch_size": batch_size,
            "threads": threads,
            "outputs": outputs or [],
            "text_column": text_column,
            "keep_columns": keep_columns or [],
        }
        result = ws.call("predict", args, label=f"predicting with {label}", reads=[model, data], progress=progress)
        sandbox.check_output(target)
        os.replace(target, output)
    return _checked(
        lambda: PredictResult(int(result["rows"]), int(result["batches"]), float(result["seconds"]), output, float(result["load_seconds"])),
        f"predicting with {label}",
    )


def bench(kind: str, path: str | Path, model_class: str | None, data: str | Path, settings: Any) -> Any:
    """One ``packager bench`` measurement in a fresh confined child; a failure is that artifact's error row."""
    from packager.bench import ArtifactBench, Measurement
    from packager.errors import PackagerError

    path = Path(path)
    try:
        with sandbox.workspace() as ws:
            args = {
                "kind": kind,
                "path": str(path.absolute()),
                "model_class": model_class,
                "data": str(Path(data).absolute()),
                "settings": asdict(settings),
            }
            result = ws.call("bench", args, label=f"benchmarking {path.name}", reads=[path, data])
        result = dict(result)
        result["measurements"] = tuple(Measurement(**m) for m in result.get("measurements", ()))
        return _checked(lambda: ArtifactBench(**result), f"benchmarking {path.name}")
    except PackagerError as exc:
        return ArtifactBench(path.name, "?", "?", None, 0, 0.0, 0.0, kind == "baseline", (), exc.one_line())


def _manifest(result: Any) -> Any:
    from packager.package import Manifest

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


# ---------------------------------------------------------------- child side


def _trust() -> bool:
    return sandbox.skip_static_checks()


def _criteria(options: dict[str, Any]) -> dict[str, Any]:
    """The child side of ``_plain_tolerance``."""
    from packager.validation import criterion_from_dict

    tolerance = options.get("tolerance")
    if isinstance(tolerance, dict):
        return {**options, "tolerance": {name: criterion_from_dict(c) for name, c in dict(tolerance.get("criteria") or {}).items()}}
    return options


def _convert(progress, path: str, out: str, **options) -> dict:
    from packager.conversion import convert

    options = _criteria(options)
    package = convert(path, out=out, overwrite=True, trust=_trust(), progress=progress, **options)
    return {"manifest": package.manifest.to_dict()}


def _convert_each(progress, path: str, targets: list[str], base: str, **options) -> list[dict]:
    from packager.conversion import convert_each

    options = _criteria(options)
    answers = []
    for result in convert_each(path, targets, base, trust=_trust(), progress=progress, overwrite=True, **options):
        if result.package is not None:
            answers.append({"target": result.target, "manifest": result.package.manifest.to_dict()})
        else:
            exc = result.error
            assert exc is not None  # a result holds a package or an error
            report = getattr(exc, "report", None)
            answers.append(
                {
                    "target": result.target,
                    "error": {
                        "type": type(exc).__name__,
                        "what": exc.what,
                        "hint": exc.hint,
                        **({"report": report.to_dict()} if report is not None else {}),
                    },
                }
            )
    return answers


def _package_source(progress, path: str, out: str, **options) -> dict:
    from packager.conversion import package_source

    return {"manifest": package_source(path, out, trust=_trust(), **options).manifest.to_dict()}


def _check(progress, path: str, fmt: str) -> None:
    from packager.safety import check_file

    if not _trust():
        check_file(path, fmt)


def _inspect(progress, path: str, **options) -> dict:
    from packager.inspection import inspect

    return inspect(path, trust=_trust(), **options)


def _validate(progress, artifact: str, source: str, **options) -> dict:
    from packager.inspection import validate

    return validate(artifact, source, trust=_trust(), **options).to_dict()


def _predict(
    progress,
    model: str,
    data: str,
    output: str,
    batch_size: int,
    threads: int | None,
    outputs: list[str],
    text_column: str | None = None,
    keep_columns: list[str] | None = None,
) -> dict:
    from packager.inference import load_predictor, predict_file, resolve

    predictor = load_predictor(resolve(model), threads=threads, trust=_trust())
    result = predict_file(
        predictor,
        data,
        output,
        batch_size=batch_size,
        outputs=outputs,
        overwrite=True,
        progress=progress,
        text_column=text_column,
        keep_columns=keep_columns,
    )
    return {"rows": result.rows, "batches": result.batches, "seconds": result.seconds, "load_seconds": result.load_seconds}


def _bench(progress, kind: str, path: str, model_class: str | None, data: str, settings: dict) -> dict:
    from packager.bench import BenchSettings, _measure_in_child

    chosen = BenchSettings(**{**settings, "batch_sizes": tuple(settings["batch_sizes"])})
    return asdict(_measure_in_child(kind, path, model_class, data, chosen, None, None))


CHILD_CALLS: dict[str, Callable[..., Any]] = {
    "convert": _convert,
    "convert_each": _convert_each,
    "package_source": _package_source,
    "inspect": _inspect,
    "check": _check,
    "validate": _validate,
    "predict": _predict,
    "bench": _bench,
}
