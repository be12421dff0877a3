"""Proving a converted artifact: run it in its own runtime and compare with the source model.

A verdict is only as good as its data and its criterion, so both are explicit:

- the *data source* (``sample``, ``calibration``, ``input-example``, ``fitted-statistics``, ``synthetic``) and row
  count are recorded in every report, and a check on synthetic rows says so;
- each output has a *kind* (class labels, probabilities, class scores, regression, embedding, integers), told by the
  framework plugin, and each format declares one criterion per (kind, quantization mode) next to its runtime
  (``@runs("onnx", criteria=ONNX_CRITERIA)``). A class-score output is judged by top-1 agreement, not by the absolute
  difference of its logits (measured: fp16 EfficientNet-Lite0 logits differ by 0.022 with 100% top-1 agreement); a
  regression by its error relative to the spread of the expected values (a diabetes MLP int8: max diff 1.9 on
  predictions spread by ~70).

Every output is compared and every mismatch collected before the verdict, with the first failing rows, so the report
shows the whole picture, not the first failure.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from packager.errors import PluginError, UsageError

PASSED, FAILED, NOT_EXECUTED = "passed", "failed", "structure-checked, not executed"
DATA_SOURCES = ("sample", "calibration", "input-example", "fitted-statistics", "built-in-text", "image-processor", "synthetic")
SHOWN_ROWS = 5  # failing rows listed per output


class OutputKind(str, enum.Enum):
    """What an output means, which decides how it is compared."""

    LABELS = "labels"
    PROBABILITIES = "probabilities"
    SCORES = "scores"  # logits / class scores: rows x classes, only their order matters to a user
    REGRESSION = "regression"
    EMBEDDING = "embedding"
    INTEGER = "integer"


# ---------------------------------------------------------------- criteria


@dataclass(frozen=True)
class Checked:
    """What a criterion found on one output: its verdict, the figures, and the rows that fail it."""

    passed: bool
    note: str = ""
    figures: Mapping[str, float | None] = field(default_factory=dict)
    bad_rows: Any = None  # boolean mask over rows, True = fails


@dataclass(frozen=True)
class Agreement:
    """Class labels: equal this often. Rows where the source's top-2 probabilities tie may take either label."""

    min_agreement: float = 1.0

    def describe(self) -> str:
        return f"labels agree on >= {self.min_agreement:.2%} of rows"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        equal = _labels_equal(want, got)
        agreement = float(np.mean(equal)) if equal.size else 1.0
        excused = ties if ties is not None and len(ties) == len(equal) else np.zeros_like(equal)
        bad = ~equal & ~excused
        effective = 1.0 - float(np.mean(bad)) if bad.size else 1.0
        passed = effective >= self.min_agreement
        tie_note = f"{int(np.sum(~equal & excused))} disagreement(s) on rows where the source's top-2 probabilities tie"
        note = tie_note if np.any(~equal & excused) else ""
        if not passed:
            note = f"labels agree on {agreement:.2%} < required {self.min_agreement:.2%}" + (f" ({note})" if note else "")
        return Checked(passed, note, {"agreement": agreement}, bad)


@dataclass(frozen=True)
class Tolerance:
    """Probabilities (or any output the user pins with --tolerance): |got - want| <= atol + rtol*|want| everywhere,
    and, for rows x classes, the best class agrees this often."""

    atol: float
    rtol: float = 0.0
    min_agreement: float = 1.0
    threshold: float | None = None  # one column = the positive class's probability: decisions at p > threshold agree

    def describe(self) -> str:
        decided = "best class" if self.threshold is None else f"the decision p > {self.threshold:g}"
        return f"|diff| <= {self.atol:g} + {self.rtol:g}*|expected|, {decided} agrees on >= {self.min_agreement:.2%}"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        diff = np.abs(want - got)
        limit = self.atol + self.rtol * np.abs(want)
        bad = _rows(~(diff <= limit) & np.isfinite(want) & np.isfinite(got), len(want))
        figures: dict[str, float | None] = {"max_abs": _max(diff)}
        notes = []
        if bad.any():
            notes.append(f"max abs diff {_max(diff):.3g} exceeds {self.atol:g} + {self.rtol:g}*|expected| on {int(bad.sum())} row(s)")
        single = want.ndim == 1 or (want.ndim == 2 and want.shape[1] == 1)
        if want.ndim == 2 and want.shape[1] >= 2:
            same = np.argmax(want, axis=1) == np.argmax(got, axis=1)
            excused = ties if ties is not None and len(ties) == len(same) else np.zeros_like(same)
            what = "best class"
        elif single and self.threshold is not None:
            # a sigmoid column's decision was never compared: int8 flipped 1.58% of breast_cancer rows and passed on
            # |diff| alone (outside user); a source at the threshold itself (within 1e-4) may go either way
            p, q = want.reshape(len(want)), got.reshape(len(got))
            same = (p > self.threshold) == (q > self.threshold)
            excused = np.abs(p - self.threshold) <= 1e-4
            what = f"the decision p > {self.threshold:g}"
        else:
            return Checked(not notes, "; ".join(notes), figures, bad)
        figures["agreement"] = float(np.mean(same))
        effective = 1.0 - float(np.mean(~same & ~excused))
        if effective < self.min_agreement:
            notes.append(f"{what} agrees on {figures['agreement']:.2%} < required {self.min_agreement:.2%}")
            bad = bad | (~same & ~excused)
        return Checked(not notes, "; ".join(notes), figures, bad)


@dataclass(frozen=True)
class TopK:
    """Class scores (logits): the best class agrees on the rows where the source is confident (its top-2 gap is at
    least ``margin`` of the typical row's score range), and the top-k sets overlap. ``max_ratio``, when set, also
    bounds the largest difference relative to the spread of the scores (full-precision formats). Scores per position
    (rows x tokens x classes: token classification) are judged position by position; a row fails if any position does."""

    k: int = 5
    min_top1: float = 1.0
    min_overlap: float = 0.95
    margin: float = 0.02
    max_ratio: float | None = None

    def describe(self) -> str:
        bound = f", max |diff| <= {self.max_ratio:g} x spread" if self.max_ratio is not None else ""
        return f"top-1 agrees on >= {self.min_top1:.2%} of confident rows, top-{self.k} overlap >= {self.min_overlap:.2%}{bound}"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        if want.ndim >= 3 and want.shape[-1] >= 2 and want.shape == got.shape:  # scores per position (token classification)
            flat = self.check(want.reshape(-1, want.shape[-1]), got.reshape(-1, got.shape[-1]))
            return replace(
                flat,
                note=flat.note.replace(" rows", " positions"),
                bad_rows=flat.bad_rows.reshape(len(want), -1).any(axis=1),
                figures={**flat.figures, "positions": float(want[..., 0].size)},
            )
        if want.ndim != 2 or want.shape[1] < 2:
            return RelativeToSpread(self.max_ratio if self.max_ratio is not None else 0.05).check(want, got)
        order = np.sort(want, axis=1)
        gap = order[:, -1] - order[:, -2]
        confident = (gap > 0) & (gap >= self.margin * float(np.median(order[:, -1] - order[:, 0])))
        same = np.argmax(want, axis=1) == np.argmax(got, axis=1)
        top1_conf = float(np.mean(same[confident])) if confident.any() else 1.0
        k = min(self.k, want.shape[1])
        top_want, top_got = np.argsort(-want, axis=1)[:, :k], np.argsort(-got, axis=1)[:, :k]
        overlap = np.array([len(set(a) & set(b)) / k for a, b in zip(top_want, top_got, strict=True)])  # shapes checked equal by compare()
        figures = {
            "top1": float(np.mean(same)),
            "top1_confident": top1_conf,
            "confident_rows": float(np.sum(confident)),
            f"top{k}_overlap": float(np.mean(overlap)),
            "max_abs": _max(np.abs(want - got)),
        }
        notes, bad = [], ~same & confident
        if not confident.any():  # every row a near-tie: top-1 cannot be judged, and saying 100% would be a silent pass
            notes.append(f"cannot judge top-1: the source is confident on none of {len(want)} row(s)")
        if top1_conf < self.min_top1:
            notes.append(f"top-1 agrees on {top1_conf:.2%} of {int(confident.sum())} confident rows < required {self.min_top1:.2%}")
        if float(np.mean(overlap)) < self.min_overlap:
            notes.append(f"top-{k} overlap {float(np.mean(overlap)):.2%} < required {self.min_overlap:.2%}")
            bad = bad | (overlap < 1.0)
        if self.max_ratio is not None:
            spread = _spread(want)
            ratio = float(np.max(np.abs(want - got)) / spread) if want.size else 0.0
            figures["relative_error"] = ratio
            if ratio > self.max_ratio:
                notes.append(f"max |diff| is {ratio:.3g} x the scores' spread > {self.max_ratio:g}")
                bad = bad | _rows(np.abs(want - got) > self.max_ratio * spread, len(want))
        return Checked(not notes, "; ".join(notes), figures, bad)


@dataclass(frozen=True)
class RelativeToSpread:
    """Regression: the largest error relative to the spread (standard deviation) of the expected values, and R².

    Rows whose expected values do not vary (one row, or one customer repeated) have no spread and no R²: such a column
    is judged against ``scale``, the spread of the source's outputs on rows drawn from the model's fitted statistics
    (``evidence.gather``), or, when the model keeps none, only an error within float32 resolution passes and anything
    else fails saying it cannot judge (R² was 0 there and every quantized regression failed "R² 0.00000 < required",
    a reason that hid the cause: outside user, Ridge on one diabetes row, int8 error 0.4% of the model's spread)."""

    max_ratio: float
    min_r2: float | None = None
    scale: tuple[float, ...] | None = None  # per output column, for columns whose expected values do not vary
    scale_from: str = ""

    def describe(self) -> str:
        r2 = f", R² >= {self.min_r2:g}" if self.min_r2 is not None else ""
        scale = f" (where they do not vary: x {self.scale_from})" if self.scale is not None else ""
        return f"max |diff| <= {self.max_ratio:g} x the spread of expected values{scale}{r2}"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        diff = np.abs(want - got)
        n = len(want)
        # each output column against its own spread: targets on different scales (y*1e5 beside y/50) were judged by the
        # largest column's float32 step over the smallest column's spread (a false failure found by an outside user)
        columns = diff.reshape(n, -1) if diff.size else diff.reshape(0, 1)
        expected = np.asarray(want, dtype=np.float64).reshape(n, -1) if diff.size else np.zeros((0, 1))
        varies = np.ptp(expected, axis=0) > 0 if n else np.zeros(columns.shape[1], dtype=bool)
        stds = expected.std(axis=0) if n else np.zeros(columns.shape[1])
        given = np.asarray(self.scale if self.scale is not None else [0.0] * columns.shape[1], dtype=np.float64)
        given = given if given.shape == (columns.shape[1],) else np.zeros(columns.shape[1])
        others = stds[varies]
        # a constant column beside varying ones keeps the smallest varying column's spread (as before); the model's
        # own scale first
        spreads = np.where(varies, stds, np.where(given > 0, given, float(others.min()) if others.size else 0.0))
        judged = spreads > 0
        worst_diff = np.array([_max(columns[:, j]) for j in range(columns.shape[1])]) if n else np.zeros(columns.shape[1])
        ratios = np.where(judged, worst_diff / np.where(judged, spreads, 1.0), 0.0)
        worst = int(np.argmax(ratios))
        ratio, spread = float(ratios[worst]), float(spreads[worst])
        figures: dict[str, float | None] = {"max_abs": _max(diff), "relative_error": ratio, "spread": spread}
        notes = []
        bad_cells = np.zeros(columns.shape, dtype=bool)
        bad_cells[:, judged] = columns[:, judged] > self.max_ratio * spreads[judged]
        if ratio > self.max_ratio:
            notes.append(
                f"max |diff| {worst_diff[worst]:.3g} is {ratio:.3g} x the expected values' spread {spread:.3g} > {self.max_ratio:g}"
            )
        unjudged = ~judged
        if unjudged.any():
            # no spread and no scale: only float32 resolution is certainly no error (16 ulps of the value)
            resolution = 16 * np.spacing(np.abs(expected[:, unjudged]).astype(np.float32)).astype(np.float64)
            off = columns[:, unjudged] > resolution
            bad_cells[:, unjudged] = off
            if not off.any():
                figures["relative_error"] = None
                notes_on_pass = (
                    f"the expected values do not vary over the {n} row(s) compared and the model gives no scale: passed "
                    f"only because the artifact is exact to float32 resolution (16 ulps)"
                )
                return Checked(True, notes_on_pass, figures, _rows(bad_cells, n))
            if off.any():
                notes.append(
                    f"cannot judge: the expected values do not vary over the {n} row(s) compared (one row, or identical "
                    f"rows), so the error {float(columns[:, unjudged][off].max()):.3g} has no spread to be measured against "
                    f"and R² is undefined, and the model keeps no fitted statistics to take a scale from: give --sample "
                    f"rows whose predictions differ"
                )
        else:
            scaled = np.where(~varies & (given > 0), given, 0.0)  # the model's scale stands in for a zero variance
            r2 = _r2(expected, np.asarray(got, dtype=np.float64).reshape(n, -1), varies, scaled)
            figures["r2"] = r2
            if self.scale is not None and not varies.all():
                figures["scale"] = float(given[~varies].min())
            if self.min_r2 is not None and r2 < self.min_r2:
                notes.append(f"R² {r2:.5f} < required {self.min_r2:g}")
        bad = _rows(bad_cells, n)
        return Checked(not notes, "; ".join(notes), figures, bad)


def _r2(want, got, varies, scaled) -> float:
    """1 - SSE / total sum of squares; a column that does not vary contributes n x its scale² (the variance the
    model's outputs have on its fitted statistics) instead of its zero variance."""
    import numpy as np

    n = len(want)
    total = float(np.sum((want[:, varies] - want[:, varies].mean(axis=0)) ** 2)) + n * float(np.sum(scaled**2))
    error = float(np.sum((want - got) ** 2))
    return 1.0 - error / total if total > 0 else (1.0 if error == 0 else 0.0)


@dataclass(frozen=True)
class Cosine:
    """Embeddings: every row's cosine similarity with the source's is at least ``min_cosine``."""

    min_cosine: float

    def describe(self) -> str:
        return f"cosine >= {self.min_cosine:g} on every row"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        a, b = want.reshape(len(want), -1), got.reshape(len(got), -1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
        cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
        worst = float(cosine.min()) if cosine.size else 1.0
        bad = cosine < self.min_cosine
        note = "" if not bad.any() else f"lowest cosine {worst:.5f} < required {self.min_cosine:g} on {int(bad.sum())} row(s)"
        return Checked(not bad.any(), note, {"cosine": worst, "max_abs": _max(np.abs(a - b))}, bad)


@dataclass(frozen=True)
class Exact:
    """Integers (token ids, counts, argmax outputs): equal, value for value."""

    def describe(self) -> str:
        return "values equal"

    def check(self, want, got, ties=None) -> Checked:
        import numpy as np

        bad = _rows(want != got, len(want))
        note = f"{int(bad.sum())} row(s) differ" if bad.any() else ""
        return Checked(not bad.any(), note, {"agreement": 1.0 - float(np.mean(bad)) if bad.size else 1.0}, bad)


Criterion = Agreement | Tolerance | TopK | RelativeToSpread | Cosine | Exact


def criterion_to_dict(criterion: Criterion) -> dict[str, Any]:
    """A criterion as plain data: the Python API's ``tolerance={name: Tolerance(...)}`` crosses into the sandbox child as JSON."""
    if not isinstance(criterion, (Agreement, Tolerance, TopK, RelativeToSpread, Cosine, Exact)):
        raise UsageError(
            f"tolerance values must be validation criteria, not {type(criterion).__name__}",
            "e.g. tolerance={'probabilities': Tolerance(1e-4)} or tolerance=['probabilities=1e-4']",
        )
    return {"criterion": type(criterion).__name__, **asdict(criterion)}


def criterion_from_dict(data: Mapping[str, Any]) -> Criterion:
    kinds = {cls.__name__: cls for cls in (Agreement, Tolerance, TopK, RelativeToSpread, Cosine, Exact)}
    fields = dict(data)
    kind = kinds.get(str(fields.pop("criterion", "")))
    if kind is None:
        raise UsageError(f"unknown validation criterion {data.get('criterion')!r}", f"use one of {', '.join(kinds)}")
    return kind(**fields)


CriteriaTable = Mapping[tuple[OutputKind, "str | None"], Criterion]


def criteria_table(by_mode: Mapping[str | None, Mapping[OutputKind, Criterion]]) -> dict[tuple[OutputKind, str | None], Criterion]:
    """A format's criteria: for each quantization mode it produces (None = not quantized), one criterion per output
    kind. Every kind must be covered, so a format never falls back to a criterion nobody chose."""
    table = {}
    for mode, by_kind in by_mode.items():
        missing = [k.value for k in OutputKind if k not in by_kind]
        if missing:
            raise PluginError(f"criteria for mode {mode or 'none'} lack output kinds {missing}", "declare one criterion per OutputKind")
        table.update({(kind, mode): criterion for kind, criterion in by_kind.items()})
    return table


# Building blocks the formats compose (each format picks per mode; see ONNX_CRITERIA in converters/onnx.py).
# The same framework re-serialized (pickle, joblib, skops, .keras, TorchScript fp32): same kernels, nearly the same
# numbers. Not bit-equal: a frozen graph folds constants, a reloaded .h5 reorders sums (measured: a Keras CNN -> .pb
# 1.04e-5 x the spread of its logits; an LSTM .h5 round trip 5.96e-8 absolute on a spread of 0.0025, 2.4e-5 x).
SAME_KERNELS: Mapping[OutputKind, Criterion] = {
    OutputKind.LABELS: Agreement(1.0),
    OutputKind.PROBABILITIES: Tolerance(1e-5, 1e-4, 1.0),
    OutputKind.SCORES: TopK(min_top1=1.0, min_overlap=1.0, max_ratio=1e-4),
    OutputKind.REGRESSION: RelativeToSpread(1e-4),
    OutputKind.EMBEDDING: Cosine(0.99999),
    OutputKind.INTEGER: Exact(),
}
# Another runtime in float32 (ONNX, TFLite, PMML): reordered sums differ in the last bits; a label flips only on a tie.
FLOAT32: Mapping[OutputKind, Criterion] = {
    OutputKind.LABELS: Agreement(0.99),
    OutputKind.PROBABILITIES: Tolerance(1e-4, 1e-3, 0.99),
    OutputKind.SCORES: TopK(min_top1=1.0, min_overlap=0.99, max_ratio=1e-3),
    OutputKind.REGRESSION: RelativeToSpread(1e-3),
    OutputKind.EMBEDDING: Cosine(0.9999),
    OutputKind.INTEGER: Exact(),
}
# fp16 weights: ~3 significant digits; logits move by 1e-2 while the ranking stays (EfficientNet-Lite0: 100% top-1).
FP16: Mapping[OutputKind, Criterion] = {
    OutputKind.LABELS: Agreement(0.98),
    OutputKind.PROBABILITIES: Tolerance(1e-2, 1e-2, 0.98),
    OutputKind.SCORES: TopK(min_top1=0.99, min_overlap=0.95),
    OutputKind.REGRESSION: RelativeToSpread(0.02, min_r2=0.999),
    OutputKind.EMBEDDING: Cosine(0.999),
    OutputKind.INTEGER: Agreement(0.98),
}
# int8 weights (dynamic): judged on what a user reads off the output, not on the last digits.
INT8: Mapping[OutputKind, Criterion] = {
    OutputKind.LABELS: Agreement(0.95),
    OutputKind.PROBABILITIES: Tolerance(0.1, 0.1, 0.95),
    OutputKind.SCORES: TopK(min_top1=0.98, min_overlap=0.9),
    OutputKind.REGRESSION: RelativeToSpread(0.15, min_r2=0.98),
    OutputKind.EMBEDDING: Cosine(0.99),
    OutputKind.INTEGER: Agreement(0.95),
}
# int8 weights and activations (static, calibrated): activations lose more.
INT8_STATIC: Mapping[OutputKind, Criterion] = {
    **INT8,
    OutputKind.LABELS: Agreement(0.9),
    OutputKind.PROBABILITIES: Tolerance(0.15, 0.15, 0.9),
    OutputKind.SCORES: TopK(min_top1=0.97, min_overlap=0.85),
    OutputKind.REGRESSION: RelativeToSpread(0.25, min_r2=0.95),
    OutputKind.EMBEDDING: Cosine(0.98),
    OutputKind.INTEGER: Agreement(0.9),
}


def criterion_for(table: CriteriaTable | None, fmt: str, kind: OutputKind, mode: str | None) -> Criterion:
    """The format's declared criterion; a format or mode that declares none is an error, never an exact match."""
    if table is None:
        raise PluginError(f"the {fmt} runtime declares no validation criteria", f"register it with @runs({fmt!r}, criteria=...)")
    found = table.get((kind, mode))
    if found is None:
        modes = sorted({m or "none" for _, m in table})
        raise PluginError(
            f"the {fmt} runtime declares no criterion for {kind.value} outputs under quantization {mode or 'none'}",
            f"its criteria cover modes {modes}; declare this one next to the runtime",
        )
    return found


# ---------------------------------------------------------------- output kinds


def infer_kind(values: Any) -> OutputKind:
    """The default kind of an output the framework plugin did not name (see ``infer_kind_why``)."""
    return infer_kind_why(values)[0]


WIDE = 64  # columns: classifier heads below this are class scores; embeddings are wider (MiniLM 384, BERT 768, ResNet 512)
CLEAR_WINNER = 1.5  # a row's top value this many times above the largest of as many standard-normal draws: a class


def infer_kind_why(values: Any) -> tuple[OutputKind, str]:
    """The kind of an output from its values alone, and why. Text and booleans are labels, integers are integers;
    floats over rows x >= 2 columns are probabilities when every row is a distribution, embeddings when every row has
    unit norm (sentence-transformers normalise) or the output has >= 3 axes. Other rows x columns are class scores
    when narrow (< WIDE columns); a wide output is class scores only when each row has a clear winner (its top value
    stands out CLEAR_WINNER x beyond what noise over that many columns gives), else an embedding: a mean-pooled
    sentence encoder (measured: MiniLM 384 wide, top value 2.6-3.7 standard deviations above the row mean, the noise
    level for 384 columns is ~2.8) judged as class scores failed a good int8 model on top-5 overlap (80%). A column of
    floats is a regression. ``--output-kind NAME=KIND`` overrides it."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind in "OUSb":
        return OutputKind.LABELS, "text or booleans"
    if array.dtype.kind in "iu":
        return OutputKind.INTEGER, "integers"
    if array.ndim >= 3:
        return OutputKind.EMBEDDING, f"{array.ndim} axes"
    if array.ndim == 2 and array.shape[1] >= 2 and len(array):
        finite = np.isfinite(array).all()
        if finite and (array >= 0).all() and np.allclose(array.sum(axis=1), 1.0, atol=1e-3):
            return OutputKind.PROBABILITIES, "every row sums to 1"
        if finite and np.allclose(np.linalg.norm(array.astype(np.float64), axis=1), 1.0, atol=1e-3):
            return OutputKind.EMBEDDING, "unit-norm rows"
        width = array.shape[1]
        if width < WIDE:
            return OutputKind.SCORES, f"{width} columns of floats (class scores)"
        rows = array[np.isfinite(array).all(axis=1)].astype(np.float64)
        std = rows.std(axis=1) if len(rows) else np.zeros(0)
        z = (rows.max(axis=1) - rows.mean(axis=1)) / np.where(std > 0, std, 1.0) if len(rows) else np.zeros(0)
        noise = _expected_max_normal(width)
        if len(z) and float(np.median(z)) >= CLEAR_WINNER * noise:
            return OutputKind.SCORES, f"{width} columns, each row with a clear winner (class scores)"
        return OutputKind.EMBEDDING, f"{width} columns, not unit-norm, no clear winner per row (features, not class scores)"
    return OutputKind.REGRESSION, "one column of floats"


def _expected_max_normal(n: int) -> float:
    """The expected largest of n standard-normal draws (Gumbel approximation; 2.83 for 384)."""
    import math

    root = math.sqrt(2 * math.log(n))
    return root - (math.log(math.log(n)) + math.log(4 * math.pi)) / (2 * root)


def parse_output_kinds(items: Any) -> dict[str, OutputKind]:
    """``--output-kind NAME=KIND`` (repeatable)."""
    found = {}
    for item in items or ():
        name, _, kind = str(item).partition("=")
        try:
            found[name.strip()] = OutputKind(kind.strip())
        except ValueError:
            raise UsageError(
                f"--output-kind {item!r} is not NAME=KIND", f"KIND is one of {', '.join(k.value for k in OutputKind)}"
            ) from None
    return found


def parse_tolerances(items: Any) -> dict[str, Tolerance]:
    """``--tolerance NAME=atol[,rtol]`` (repeatable): that output is judged by this absolute tolerance instead."""
    found = {}
    for item in items or ():
        name, _, numbers = str(item).partition("=")
        try:
            parts = [float(x) for x in numbers.split(",")]
            if not 1 <= len(parts) <= 2 or any(p < 0 for p in parts):
                raise ValueError
        except ValueError:
            raise UsageError(
                f"--tolerance {item!r} is not NAME=ATOL[,RTOL]", "e.g. --tolerance logits=0.05 or --tolerance variable=0.5,0.01"
            ) from None
        found[name.strip()] = Tolerance(parts[0], parts[1] if len(parts) == 2 else 0.0, 0.0)
    return found


def with_min_agreement(criterion: Criterion, value: float) -> Criterion:
    """``--min-agreement``: the agreement a label, probability or top-1 criterion requires."""
    if isinstance(criterion, (Agreement, Tolerance)):
        return replace(criterion, min_agreement=value)
    if isinstance(criterion, TopK):
        return replace(criterion, min_top1=value)
    return criterion


def for_output(criterion: Criterion, kind: OutputKind, want: Any, scale: Any = None) -> Criterion:
    """The criterion as it applies to this output: a single probability column decides at p > 0.5 (a binary sigmoid
    head), and a regression takes the scale the evidence drew from the model (``Evidence.scales``) for columns that do
    not vary on the rows compared."""
    import numpy as np

    array = np.asarray(want)
    single = array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)
    if OutputKind(kind) is OutputKind.PROBABILITIES and isinstance(criterion, Tolerance) and single and criterion.threshold is None:
        return replace(criterion, threshold=0.5)
    if OutputKind(kind) is OutputKind.REGRESSION and isinstance(criterion, RelativeToSpread) and scale and criterion.scale is None:
        values, origin = scale
        return replace(criterion, scale=tuple(float(v) for v in values), scale_from=origin)
    return criterion


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class OutputComparison:
    """How one output of the artifact compares with the same output of the source."""

    name: str
    kind: str  # an OutputKind value, or "missing"
    max_abs: float | None
    max_rel: float | None
    agreement: float | None  # labels (and the best class of probabilities): fraction equal
    passed: bool
    note: str = ""
    cosine: float | None = None
    top1: float | None = None  # class scores only
    criterion: str = ""
    figures: Mapping[str, float | None] = field(default_factory=dict)
    failing_rows: tuple[Mapping[str, Any], ...] = ()  # the first few: row index, expected, actual
    cast_effect: float | None = None  # max |source on the user's input - source on the input cast to the signature|
    kind_rule: str = ""  # which rule decided the kind: "plugin: LGBMRanker is a ranker", "values: unit-norm rows", "--output-kind"


@dataclass(frozen=True)
class ValidationReport:
    """The proof attached to every package."""

    status: str
    runtime: str
    runtime_version: str
    samples: int
    data_source: str = "synthetic"
    criteria: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[OutputComparison, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    accepted_mismatch: bool = False
    batch_sizes: tuple[int, ...] = ()
    note: str = ""
    parent: Mapping[str, Any] = field(default_factory=dict)  # a quantized artifact: its fp32 parent's verdict

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outputs"] = [asdict(o) for o in self.outputs]
        data["details"] = dict(self.details)
        data["criteria"] = dict(self.criteria)
        data["batch_sizes"] = list(self.batch_sizes)
        return data

    def failures(self) -> list[str]:
        own = [f"{o.name}: {o.note}" for o in self.outputs if not o.passed]
        if self.parent.get("status") == FAILED:
            return [parent_failure(self.parent.get("failures", ())), *own]
        return own

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ValidationReport":
        """The inverse of ``to_dict``: a report that crossed the sandbox boundary as JSON."""
        data = dict(data)
        data["outputs"] = tuple(
            OutputComparison(**{**o, "failing_rows": tuple(o.get("failing_rows", ()))}) for o in data.get("outputs", ())
        )
        data["batch_sizes"] = tuple(data.get("batch_sizes", ()))
        return cls(**data)


def parent_failure(failures: Any) -> str:
    return "its fp32 parent already fails: " + "; ".join(failures)


def with_parent(report: ValidationReport, parent: ValidationReport) -> ValidationReport:
    """A quantized artifact judged with its unquantized parent: the parent must pass its own (fp32) criterion first.
    An error the converter makes at full precision is carried by every quantized child, and the child's looser
    criterion would let it through (measured: TF-IDF with sublinear_tf, probabilities 0.02 off in fp32, fails the
    fp32 criterion 1e-4 and passed int8's 0.1)."""
    summary = {"status": parent.status, "failures": parent.failures(), "criteria": dict(parent.criteria)}
    if parent.status != FAILED:
        return replace(report, parent=summary)
    return replace(report, status=FAILED, parent=summary)


def synthetic_note(data_source: str) -> str:
    """One line for reports and the CLI when the verdict rests on made-up rows."""
    if data_source != "synthetic":
        return ""
    return "checked on synthetic inputs (standard-normal rows), not on data like yours: give --sample FILE with real rows"


def compare_outputs(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    criteria: Mapping[str, Criterion],
    kinds: Mapping[str, OutputKind],
    optional: frozenset[str] = frozenset(),
    cast_expected: Mapping[str, Any] | None = None,
) -> tuple[OutputComparison, ...]:
    """Compare every expected output with its criterion; an absent one fails unless the format may omit it.

    ``expected`` is the source on the user's input at full precision; ``cast_expected``, when given, the source on the
    input cast to the signature (what the artifact was fed). An output passes when it meets its criterion against
    either: the difference the cast alone causes is the ``cast_effect``, reported, not blamed on the converter."""
    results = []
    ties = _near_ties(expected)
    for name, want in expected.items():
        if name not in actual:
            allowed = name in optional
            note = "not produced by this format (recorded, not compared)" if allowed else "the artifact does not produce this output"
            results.append(OutputComparison(name, "missing", None, None, None, allowed, note))
            continue
        kind, criterion = kinds[name], criteria[name]
        result = compare_one(name, want, actual[name], kind, criterion, ties)
        cast_want = None if cast_expected is None else cast_expected.get(name)
        if cast_want is not None:
            effect = _cast_effect(want, cast_want)
            if not result.passed and effect:
                again = compare_one(name, cast_want, actual[name], kind, criterion, ties)
                if again.passed:
                    result = replace(
                        result,
                        passed=True,
                        note=f"meets its criterion against the source on the cast input; "
                        f"the cast alone changes the source's output by up to {effect:.3g} (cast_effect)",
                    )
            result = replace(result, cast_effect=effect)
        results.append(result)
    return _labels_from_nonfinite(tuple(results), expected, actual, kinds)


def _labels_from_nonfinite(results, expected, actual, kinds) -> tuple[OutputComparison, ...]:
    """A label read off probabilities (or scores) that are NaN/inf in the artifact only is no label at all, even when
    argmax happens to land on the source's class: those rows fail the label output too."""
    import numpy as np

    feeders = [n for n, k in kinds.items() if k in (OutputKind.PROBABILITIES, OutputKind.SCORES) and n in actual]
    out = []
    for result in results:
        if result.kind == OutputKind.LABELS.value and result.passed:
            for feeder in feeders:
                want, got = np.asarray(expected[feeder]), np.asarray(actual[feeder])
                if want.shape != got.shape or not len(want) or want.dtype.kind not in "fiu" or got.dtype.kind not in "fiu":
                    continue
                bad, _ = one_sided_nonfinite(want, got)
                if bad.any():
                    note = f"{int(bad.sum())} of {len(bad)} rows' labels come from {feeder} that is NaN/inf in the artifact only"
                    result = replace(result, passed=False, note=note)
                    break
        out.append(result)
    return tuple(out)


def compare_one(name: str, want: Any, got: Any, kind: OutputKind, criterion: Criterion, ties: Any = None) -> OutputComparison:
    """One output against one criterion: shapes, non-finite values, then the criterion on the finite rows."""
    import numpy as np

    kind = OutputKind(kind)
    criterion = for_output(criterion, kind, want)
    text = kind is OutputKind.LABELS or np.asarray(want).dtype.kind in "OUSb" or np.asarray(got).dtype.kind in "OUSb"
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape and want.size == got.size and want.ndim and got.ndim and len(want) == len(got):
        got = got.reshape(want.shape)  # (n,) vs (n, 1): same values, layout differs by runtime
    if want.shape != got.shape:
        return OutputComparison(
            name, kind.value, None, None, None, False, f"shape {got.shape} != expected {want.shape}", criterion=criterion.describe()
        )
    if want.ndim == 0:
        want, got = want.reshape(1), got.reshape(1)
    if not text:
        want, got = want.astype(np.float64), got.astype(np.float64)
    if not len(want):  # an empty sample proves nothing: say so instead of passing
        return OutputComparison(
            name, kind.value, None, None, None, False, "cannot judge: no rows to compare (empty sample)", criterion=criterion.describe()
        )
    nonfinite_bad = np.zeros(len(want), dtype=bool)
    nonfinite_note = ""
    if text or isinstance(criterion, Agreement):
        checked = (criterion if isinstance(criterion, Agreement) else Agreement()).check(want, got, ties)
    else:
        nonfinite_bad, nonfinite_note = one_sided_nonfinite(want, got)
        rows = ~nonfinite_bad & _rows(np.isfinite(want) & np.isfinite(got), len(want), all_=True)
        sub_ties = ties[rows] if ties is not None and len(ties) == len(want) else None
        if rows.any():
            checked = criterion.check(want[rows], got[rows], sub_ties)
        elif nonfinite_bad.any():
            checked = Checked(False)
        else:  # NaN/inf in the same places on both sides, on every row: nothing finite left to judge
            checked = Checked(False, f"cannot judge: every one of {len(want)} row(s) is NaN/inf on both sides")
        checked = replace(checked, bad_rows=_expand(checked.bad_rows, rows))
    notes = [checked.note] if checked.note else []
    if nonfinite_bad.any():
        notes.insert(0, nonfinite_note)
    bad = nonfinite_bad | (checked.bad_rows if checked.bad_rows is not None else np.zeros(len(want), dtype=bool))
    passed = checked.passed and not nonfinite_bad.any()
    figures = {k: v for k, v in dict(checked.figures).items() if v is not None}
    max_abs = figures.get("max_abs")
    max_rel = None
    if not text and np.isfinite(want).any():
        finite = np.isfinite(want) & np.isfinite(got)
        max_rel = float((np.abs(want - got)[finite] / np.maximum(np.abs(want[finite]), 1e-12)).max()) if finite.any() else None
    return OutputComparison(
        name,
        kind.value,
        max_abs,
        max_rel,
        figures.get("agreement"),
        passed,
        "; ".join(notes) if not passed else (checked.note or ""),
        figures.get("cosine"),
        figures.get("top1") if kind is OutputKind.SCORES else None,
        criterion.describe(),
        figures,
        _failing_rows(want, got, bad) if not passed else (),
    )


def build_report(
    outputs: tuple[OutputComparison, ...],
    *,
    runtime: str,
    runtime_version: str,
    samples: int,
    data_source: str,
    criteria: Mapping[str, Criterion],
    details: Mapping[str, Any] | None = None,
    batch_sizes: tuple[int, ...] = (),
) -> ValidationReport:
    compared = [o for o in outputs if o.kind != "missing"]
    status = PASSED if compared and all(o.passed for o in outputs) else FAILED
    return ValidationReport(
        status,
        runtime,
        runtime_version,
        samples,
        data_source,
        {k: c.describe() for k, c in criteria.items()},
        outputs,
        dict(details or {}),
        batch_sizes=tuple(batch_sizes),
        note=synthetic_note(data_source),
    )


def not_executed_report(*, runtime: str, runtime_version: str, details: Mapping[str, Any]) -> ValidationReport:
    """For formats with no runtime on this OS: the structure was checked, nothing was run."""
    return ValidationReport(NOT_EXECUTED, runtime, runtime_version, 0, "none", {}, (), dict(details))


# ---------------------------------------------------------------- helpers


def _labels_equal(want, got):
    import numpy as np

    want, got = np.asarray(want), np.asarray(got)
    want = want.reshape(len(want), -1) if want.ndim else want.reshape(1, 1)
    got = got.reshape(len(got), -1) if got.ndim else got.reshape(1, 1)
    if {want.dtype.kind, got.dtype.kind} <= set("biuf") and "b" in (want.dtype.kind, got.dtype.kind):
        want, got = want.astype(np.int64), got.astype(np.int64)  # bool classes come back from ONNX as 0/1
    elif want.dtype.kind != got.dtype.kind:
        want, got = want.astype(str), got.astype(str)
    return (want == got).all(axis=1)  # a row agrees when every one of its labels does (multi-output classifiers)


def _near_ties(expected: Mapping[str, Any]):
    """Rows where the source's two best class probabilities are within 1e-4: either label is right (ties in top-1)."""
    import numpy as np

    probabilities = expected.get("probabilities")
    if probabilities is None or np.asarray(probabilities).ndim != 2 or np.asarray(probabilities).shape[1] < 2:
        return None
    top2 = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) <= 2e-4


def _rows(mask, n: int, all_: bool = False):
    """An elementwise mask reduced to rows: any element (or, with ``all_``, every element) true."""
    import numpy as np

    mask = np.asarray(mask).reshape(n, -1) if n else np.asarray(mask).reshape(0, 1)
    return mask.all(axis=1) if all_ else mask.any(axis=1)


def _expand(mask, rows):
    import numpy as np

    full = np.zeros(len(rows), dtype=bool)
    if mask is not None:
        full[rows] = mask
    return full


def one_sided_nonfinite(want, got) -> tuple[Any, str]:
    """Rows with an element that is NaN/inf on one side only (or inf of the other sign), and a sentence saying how
    many and which way: "3 of 89 rows give inf in the artifact where the source is finite". Judged element by
    element before any criterion, for every kind: an fp16 square above 65504 is inf in the artifact while the
    source is finite (measured: PolynomialFeatures + Ridge on raw diabetes), and a criterion that only looks at
    rows finite on both sides never sees it."""
    import numpy as np

    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    same = (want == got) | (np.isfinite(want) & np.isfinite(got)) | (np.isnan(want) & np.isnan(got))
    n = len(want)
    bad = _rows(~same, n)
    if not bad.any():
        return bad, ""
    parts = []
    for what, mask in (
        ("inf", np.isinf(got) & np.isfinite(want)),
        ("NaN", np.isnan(got) & np.isfinite(want)),
    ):
        count = int(_rows(mask, n).sum())
        if count:
            parts.append(f"{count} of {n} rows give {what} in the artifact where the source is finite")
    count = int(_rows(np.isfinite(got) & ~np.isfinite(want), n).sum())
    if count:
        parts.append(f"{count} of {n} rows are finite in the artifact where the source gives NaN/inf")
    count = int(_rows(~same & ~np.isfinite(got) & ~np.isfinite(want), n).sum())
    if count:
        parts.append(f"{count} of {n} rows give a different NaN/inf in the artifact than the source")
    return bad, "; ".join(parts)


def _spread(want) -> float:
    """Standard deviation of the expected values (per column, the smallest non-zero); 1e-12 floor for constants."""
    import numpy as np

    columns = np.asarray(want, dtype=np.float64).reshape(len(want), -1)
    stds = columns.std(axis=0) if len(columns) > 1 else np.abs(columns).max(axis=0)
    positive = stds[stds > 0]
    return float(positive.min()) if positive.size else max(float(np.abs(columns).max()) if columns.size else 0.0, 1e-12)


def _max(values) -> float:
    import numpy as np

    values = np.asarray(values)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _cast_effect(full, cast) -> float | None:
    import numpy as np

    full, cast = np.asarray(full), np.asarray(cast)
    if full.shape != cast.shape:
        return None
    if full.dtype.kind not in "fiu" or cast.dtype.kind not in "fiu":
        return float(np.mean(full.astype(str) != cast.astype(str)))
    return _max(np.abs(full.astype(np.float64) - cast.astype(np.float64)))


def _failing_rows(want, got, bad) -> tuple[dict[str, Any], ...]:
    import numpy as np

    rows = []
    for index in np.flatnonzero(bad)[:SHOWN_ROWS]:
        rows.append({"row": int(index), "expected": _brief(want[index]), "actual": _brief(got[index])})
    return tuple(rows)


def _brief(value) -> Any:
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return round(item, 6) if isinstance(item, float) else item if isinstance(item, (int, bool)) else str(item)
    flat = array.reshape(-1)
    shown = [round(float(v), 6) if array.dtype.kind == "f" else (v.item() if hasattr(v, "item") else v) for v in flat[:6]]
    return shown + (["…"] if flat.size > 6 else [])
