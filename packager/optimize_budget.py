"""The accuracy budget of ``packager optimize``: ``METRIC<=VALUE`` / ``METRIC>=VALUE`` bounds, read off the validation
report of a candidate judged on held-out rows.

Why a separate module: the budget is the user's contract with the search; parsing it (and refusing what cannot be
judged) happens before any conversion starts, and the same rules judge every candidate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from packager.errors import UsageError

# metric -> the direction it must hold ("<=" for errors, ">=" for agreements), and how it is read off the outputs
METRICS = {
    "agreement": ">=",
    "top1": ">=",
    "cosine": ">=",
    "r2": ">=",
    "max_abs_diff": "<=",
    "max_rel_diff": "<=",
}
_BOUND = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")

# When the user gives none: one bound per output kind, printed before the search (the kinds' own criteria still apply:
# a candidate whose validation fails is never within budget).
DEFAULTS = {
    "labels": ("agreement", ">=", 0.99),
    "probabilities": ("agreement", ">=", 0.99),
    "logits": ("top1", ">=", 0.99),
    "embedding": ("cosine", ">=", 0.99),
    "regression": ("r2", ">=", 0.999),
}


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, measured: float | None) -> bool:
        """A bound on a metric the outputs do not give cannot be judged: it fails (never a false pass)."""
        if measured is None or measured != measured:  # NaN
            return False
        return measured <= self.value if self.op == "<=" else measured >= self.value


def parse_budget(texts: str | Iterable[str]) -> tuple[Bound, ...]:
    """``["agreement>=0.999", "max_abs_diff<=1e-5"]`` -> bounds; a wrong metric, direction or number, or a value the
    metric can never reach (``r2>=2``), is a UsageError. A single string is one bound (it was split into characters)."""
    bounds = []
    for text in [texts] if isinstance(texts, str) else texts:
        match = _BOUND.match(text or "")
        if not match:
            raise UsageError(
                f"--budget {text!r} is not METRIC<=VALUE or METRIC>=VALUE", "e.g. --budget agreement>=0.999 --budget max_abs_diff<=1e-5"
            )
        metric, op, raw = match.groups()
        if metric not in METRICS:
            raise UsageError(f"--budget {text!r}: unknown metric {metric!r}", f"metrics: {', '.join(METRICS)}")
        if op != METRICS[metric]:
            raise UsageError(
                f"--budget {text!r}: {metric} is bounded with {METRICS[metric]} ({'an error' if METRICS[metric] == '<=' else 'a score'})",
                f"e.g. --budget {metric}{METRICS[metric]}{raw}",
            )
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"--budget {text!r}: {raw!r} is not a number", "e.g. --budget agreement>=0.999") from None
        if value != value or value in (float("inf"), float("-inf")) or (METRICS[metric] == "<=" and value < 0):
            raise UsageError(f"--budget {text!r}: {raw} is not a usable bound", "give a finite, non-negative error bound")
        if METRICS[metric] == ">=" and value > 1:  # a share of rows, a cosine, an R²: none exceeds 1
            raise UsageError(f"--budget {text!r}: {metric} is at most 1, so no candidate can meet it", f"e.g. --budget {metric}>=0.99")
        bounds.append(Bound(metric, op, value))
    return tuple(bounds)


# The output kinds whose validation criterion reports each metric (packager.validation: Agreement and Exact give
# agreement only; Tolerance max_abs and, over classes, agreement; TopK top1 and max_abs; RelativeToSpread max_abs and
# r2; Cosine cosine and max_abs). max_rel_diff is computed for any numeric output, so it is never refused by kind.
GIVEN_BY = {
    "agreement": {"labels", "probabilities", "integer"},
    "top1": {"scores"},
    "cosine": {"embedding"},
    "r2": {"regression"},
    "max_abs_diff": {"probabilities", "scores", "regression", "embedding"},
}


def unjudgeable(bound: Bound, kinds: Iterable[str]) -> list[str] | None:
    """None when some output of these kinds gives ``bound``'s metric; else the metrics they do give (a bound no output
    gives fails every candidate: "r2 not measured" on a classifier, refused after the whole search)."""
    kinds = set(kinds)
    if bound.metric not in GIVEN_BY or GIVEN_BY[bound.metric] & kinds:
        return None
    return [m for m in METRICS if m not in GIVEN_BY or GIVEN_BY[m] & kinds]


def default_budget(kinds: Iterable[str]) -> tuple[Bound, ...]:
    """One bound per output kind present (labels and probabilities share agreement)."""
    seen: dict[str, Bound] = {}
    for kind in kinds:
        if kind in DEFAULTS:
            metric, op, value = DEFAULTS[kind]
            seen.setdefault(metric, Bound(metric, op, value))
    return tuple(seen.values())


def fidelity(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The worst value of each metric over the report's outputs (min of scores, max of errors); None where no output
    gives it."""
    outputs = report.get("outputs", ())

    def values(key: str) -> list[float]:
        found = []
        for o in outputs:
            value = o.get(key) if key in o else (o.get("figures") or {}).get(key)
            if value is not None:
                found.append(float(value))
        return found

    table = {"agreement": values("agreement"), "top1": values("top1"), "cosine": values("cosine"), "r2": values("r2")}
    result: dict[str, float | None] = {k: (min(v) if v else None) for k, v in table.items()}
    abs_, rel = values("max_abs"), values("max_rel")
    result["max_abs_diff"] = max(abs_) if abs_ else None
    result["max_rel_diff"] = max(rel) if rel else None
    return result


def judge(bounds: Iterable[Bound], measured: Mapping[str, float | None]) -> list[str]:
    """The bounds that do not hold, each said with the measured value."""
    broken = []
    for bound in bounds:
        value = measured.get(bound.metric)
        if not bound.holds(value):
            broken.append(f"{bound.metric} {'not measured' if value is None else f'{value:.6g}'} (budget {bound})")
    return broken
