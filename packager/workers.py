"""One worker per operation: the code that executes a request (``packager.requests``) in the process it is given to.

The sandbox child (``packager._sandbox_child``) reads an operation name and the request as JSON and calls ``execute``;
the fuzz harness calls it too, in its own confined process. Nothing here decides whether to confine: whoever calls a
worker is where the work runs (the public API decides once, in ``submit``-style functions, and never re-enters). What a
worker returns is plain data (manifests and reports as dicts), ready to be sent back as JSON.

``trust`` is an argument, never part of the request: a request is data from the parent, and the child's trust comes
only from the test-only switch it checks itself (``sandbox.skip_static_checks``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from packager.requests import (
    BenchRequest,
    CheckRequest,
    ConvertRequest,
    InspectRequest,
    PackageRequest,
    PredictRequest,
    ValidateRequest,
    from_data,
)

log = logging.getLogger(__name__)
Progress = Callable[[Any], None] | None


def convert(request: ConvertRequest, trust: bool, progress: Progress) -> Any:
    from packager.conversion import run_convert, run_convert_each

    request = _criteria(request)
    if not request.targets:
        return {"manifest": run_convert(request, trust=trust, progress=progress).manifest.to_dict()}
    answers: list[dict[str, Any]] = []
    for result in run_convert_each(request, trust=trust, progress=progress):
        if result.package is not None:
            answers.append({"target": result.target, "manifest": result.package.manifest.to_dict()})
            continue
        exc = result.error
        assert exc is not None  # a result holds a package or an error
        report = getattr(exc, "report", None)
        error = {"type": type(exc).__name__, "what": exc.what, "hint": exc.hint, **({"report": report.to_dict()} if report else {})}
        answers.append({"target": result.target, "error": error})
    return answers


def package(request: PackageRequest, trust: bool, progress: Progress) -> Any:
    from packager.conversion import run_package_source

    return {"manifest": run_package_source(request, trust=trust).manifest.to_dict()}


def check(request: CheckRequest, trust: bool, progress: Progress) -> None:
    from packager.safety import check_file

    if not trust:
        check_file(request.path, request.fmt)


def inspect(request: InspectRequest, trust: bool, progress: Progress) -> Any:
    from packager.inspection import run_inspect

    return run_inspect(request, trust=trust)


def validate(request: ValidateRequest, trust: bool, progress: Progress) -> Any:
    from packager.inspection import run_validate

    return run_validate(_criteria(request), trust=trust).to_dict()


def predict(request: PredictRequest, trust: bool, progress: Progress) -> Any:
    from packager.inference import run_predict

    result = run_predict(request, trust=trust, progress=progress)
    return {"rows": result.rows, "batches": result.batches, "seconds": result.seconds, "load_seconds": result.load_seconds}


def bench(request: BenchRequest, trust: bool, progress: Progress) -> Any:
    from packager.bench import run_measure

    return asdict(run_measure(request))


WORKERS: dict[str, tuple[type, Callable[[Any, bool, Progress], Any]]] = {
    "convert": (ConvertRequest, convert),
    "package": (PackageRequest, package),
    "check": (CheckRequest, check),
    "inspect": (InspectRequest, inspect),
    "validate": (ValidateRequest, validate),
    "predict": (PredictRequest, predict),
    "bench": (BenchRequest, bench),
}


def execute(operation: str, data: Mapping[str, Any], *, trust: bool = False, progress: Progress = None) -> Any:
    """Execute the request ``data`` (as ``requests.to_data`` wrote it) with ``operation``'s worker, here."""
    if operation not in WORKERS:
        from packager.errors import PackagerError

        raise PackagerError(f"no worker executes {operation!r}", "report this bug: the parent and the child disagree")
    cls, work = WORKERS[operation]
    request = from_data(cls, data)
    log.debug("executing the %s worker", operation)  # counted by the acceptance test: one convert runs it once
    return work(request, trust, progress)


def _criteria(request: Any) -> Any:
    """The child side of ``confined._plain_tolerance``: ``{"criteria": {output: criterion}}`` back to Criterion objects."""
    from dataclasses import replace

    tolerance = request.tolerance
    if isinstance(tolerance, Mapping) and "criteria" in tolerance:
        from packager.validation import criterion_from_dict

        return replace(request, tolerance={name: criterion_from_dict(c) for name, c in dict(tolerance.get("criteria") or {}).items()})
    return request
