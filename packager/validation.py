"""Proving a converted artifact: run it in its own runtime and compare with the source model.

Tolerances are declarative, per target format and quantization mode (like Optimum's
``ATOL_FOR_VALIDATION``). Every output is compared and every mismatch collected before the
verdict, so the report shows the whole picture, not the first failure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

PASSED, FAILED, NOT_EXECUTED = "passed", "failed", "structure-checked, not executed"


@dataclass(frozen=True)
class Tolerance:
    """How close a converted output must be: allclose(atol, rtol); labels must agree this often."""

    atol: float
    rtol: float
    min_label_agreement: float = 1.0


EXACT = Tolerance(0.0, 0.0, 1.0)
TOLERANCES: dict[tuple[str, str | None], Tolerance] = {
    ("onnx", None): Tolerance(1e-4, 1e-3, 0.99),
    ("torchscript", None): Tolerance(1e-5, 1e-4, 1.0),
    ("torchscript", "dynamic"): Tolerance(0.1, 0.1, 0.95),
    ("pt2", None): Tolerance(1e-5, 1e-4, 1.0),
    ("onnx", "fp16"): Tolerance(1e-2, 1e-2, 0.98),
    ("onnx", "dynamic"): Tolerance(0.1, 0.1, 0.95),
    ("onnx", "static"): Tolerance(0.15, 0.15, 0.9),
    ("torchscript", "static"): Tolerance(0.15, 0.15, 0.9),
    ("keras", None): Tolerance(1e-5, 1e-4, 1.0),
    ("keras", "dynamic"): Tolerance(0.1, 0.1, 0.95),
    ("hdf5", None): Tolerance(1e-5, 1e-4, 1.0),
    ("hdf5", "dynamic"): Tolerance(0.1, 0.1, 0.95),
    ("savedmodel", None): Tolerance(1e-5, 1e-4, 1.0),
    ("pb", None): Tolerance(1e-5, 1e-4, 1.0),
    ("tflite", None): Tolerance(1e-4, 1e-3, 0.99),
    ("tflite", "fp16"): Tolerance(1e-2, 1e-2, 0.98),
    ("tflite", "dynamic"): Tolerance(0.1, 0.1, 0.95),
    ("tflite", "static"): Tolerance(0.15, 0.15, 0.9),
    ("pmml", None): Tolerance(1e-5, 1e-4, 1.0),
    ("mleap", None): Tolerance(1e-6, 1e-5, 1.0),
}


def tolerance_for(target: str, quantization: str | None) -> Tolerance:
    return TOLERANCES.get((target, quantization)) or TOLERANCES.get((target, None)) or EXACT


@dataclass(frozen=True)
class OutputComparison:
    """How one output of the artifact compares with the same output of the source."""

    name: str
    kind: str  # "numeric" or "label"
    max_abs: float | None
    max_rel: float | None
    agreement: float | None  # labels: fraction equal
    passed: bool
    note: str = ""
    cosine: float | None = None  # numeric outputs: the lowest per-sample cosine similarity
    top1: float | None = None  # scores over classes (rows x >=2 columns): how often the argmax agrees


@dataclass(frozen=True)
class ValidationReport:
    """The proof attached to every package."""

    status: str
    runtime: str
    runtime_version: str
    samples: int
    tolerance: Tolerance
    outputs: tuple[OutputComparison, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    accepted_mismatch: bool = False

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outputs"] = [asdict(o) for o in self.outputs]
        data["details"] = dict(self.details)
        return data

    def failures(self) -> list[str]:
        return [f"{o.name}: {o.note}" for o in self.outputs if not o.passed]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ValidationReport":
        """The inverse of ``to_dict``: a report that crossed the sandbox boundary as JSON."""
        data = dict(data)
        data["tolerance"] = Tolerance(**data["tolerance"])
        data["outputs"] = tuple(OutputComparison(**o) for o in data.get("outputs", ()))
        return cls(**data)


def compare_outputs(expected: Mapping[str, Any], actual: Mapping[str, Any], tolerance: Tolerance, label_outputs: set[str], optional: frozenset[str] = frozenset()) -> tuple[OutputComparison, ...]:
    """Compare every expected output; an absent one fails unless the format may omit it (``optional``)."""
    results = []
    for name, want in expected.items():
        if name not in actual:
            allowed = name in optional
            note = "not produced by this format (recorded, not compared)" if allowed else "the artifact does not produce this output"
            results.append(OutputComparison(name, "missing", None, None, None, allowed, note))
        elif name in label_outputs or _is_text(want):
            results.append(_compare_labels(name, want, actual[name], tolerance, _near_ties(expected, tolerance)))
        else:
            results.append(_compare_numeric(name, want, actual[name], tolerance))
    return tuple(results)


def _is_text(array: Any) -> bool:
    import numpy as np

    return np.asarray(array).dtype.kind in "OUSb"


def _near_ties(expected: Mapping[str, Any], tol: Tolerance):
    """Rows where the source's two best class probabilities are within tolerance: either label is right."""
    import numpy as np

    probabilities = expected.get("probabilities")
    if probabilities is None or np.asarray(probabilities).ndim != 2 or np.asarray(probabilities).shape[1] < 2:
        return None
    top2 = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) <= max(2 * tol.atol, 1e-6)


def _compare_labels(name: str, want: Any, got: Any, tol: Tolerance, ties: Any = None) -> OutputComparison:
    import numpy as np

    want, got = np.asarray(want).reshape(-1), np.asarray(got).reshape(-1)
    if want.shape != got.shape:
        return OutputComparison(name, "label", None, None, None, False, f"shape {got.shape} != expected {want.shape}")
    if want.dtype.kind != got.dtype.kind:
        want, got = want.astype(str), got.astype(str)
    equal = want == got
    agreement = float(np.mean(equal)) if want.size else 1.0
    excused = int(np.sum(~equal & ties)) if ties is not None and len(ties) == len(equal) else 0
    effective = float(np.mean(equal | ties)) if excused else agreement
    passed = effective >= tol.min_label_agreement
    note = f"{excused} disagreement(s) on rows where the source's top-2 probabilities tie" if excused else ""
    if not passed:
        note = f"labels agree on {agreement:.2%} < required {tol.min_label_agreement:.2%}" + (f" ({note})" if note else "")
    return OutputComparison(name, "label", None, None, agreement, passed, note)


def _compare_numeric(name: str, want: Any, got: Any, tol: Tolerance) -> OutputComparison:
    import numpy as np

    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if want.size == got.size and want.shape != got.shape:
        got = got.reshape(want.shape)  # (n,) vs (n, 1): same values, layout differs by runtime
    if want.shape != got.shape:
        return OutputComparison(name, "numeric", None, None, None, False, f"shape {got.shape} != expected {want.shape}")
    if want.size == 0:
        return OutputComparison(name, "numeric", 0.0, 0.0, None, True)
    diff = np.abs(want - got)
    finite = np.isfinite(want) & np.isfinite(got)
    same_nonfinite = bool(np.array_equal(np.isnan(want), np.isnan(got)) and np.all(want[~finite & ~np.isnan(want)] == got[~finite & ~np.isnan(want)]))
    max_abs = float(diff[finite].max()) if finite.any() else 0.0
    rel = diff[finite] / np.maximum(np.abs(want[finite]), 1e-12)
    max_rel = float(rel.max()) if rel.size else 0.0
    close = bool(np.allclose(got, want, atol=tol.atol, rtol=tol.rtol, equal_nan=True)) and same_nonfinite
    note = "" if close else f"max abs diff {max_abs:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g}·|expected|"
    return OutputComparison(name, "numeric", max_abs, max_rel, None, close, note, _min_cosine(want, got), _top1(want, got))


def _top1(want, got) -> float | None:
    """Classifier logits/probabilities: the fraction of rows whose best class is the same."""
    import numpy as np

    if want.ndim != 2 or want.shape[1] < 2 or not len(want):
        return None
    return float(np.mean(np.argmax(want, axis=1) == np.argmax(got, axis=1)))


def _min_cosine(want, got) -> float | None:
    import numpy as np

    if not (np.isfinite(want).all() and np.isfinite(got).all()):
        return None
    a, b = want.reshape(len(want), -1) if want.ndim else want.reshape(1, -1), got.reshape(len(got), -1) if got.ndim else got.reshape(1, -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    keep = norms > 0
    return float(((a * b).sum(axis=1)[keep] / norms[keep]).min()) if keep.any() else None


def build_report(outputs: tuple[OutputComparison, ...], *, runtime: str, runtime_version: str, samples: int, tolerance: Tolerance, details: Mapping[str, Any] | None = None) -> ValidationReport:
    compared = [o for o in outputs if o.kind != "missing"]
    status = PASSED if compared and all(o.passed for o in outputs) else FAILED
    return ValidationReport(status, runtime, runtime_version, samples, tolerance, outputs, dict(details or {}))


def not_executed_report(*, runtime: str, runtime_version: str, details: Mapping[str, Any]) -> ValidationReport:
    """For formats with no runtime on this OS: the structure was checked, nothing was run."""
    return ValidationReport(NOT_EXECUTED, runtime, runtime_version, 0, EXACT, (), dict(details))
