"""The verdict rules of issue 26: a one-sided NaN/inf fails whatever the criterion, a criterion that cannot judge fails
loudly, a quantized artifact is no better than its fp32 parent, and output kinds come from what the plugin knows first."""
from __future__ import annotations

import numpy as np
import pytest

from packager.validation import FLOAT32, FP16, INT8, INT8_STATIC, SAME_KERNELS, Agreement, OutputKind, compare_one, compare_outputs

RNG = np.random.default_rng(26)
REG = RNG.standard_normal(89) * 58 + 150
OVERFLOW = REG.copy()
OVERFLOW[[5, 17, 60]] = np.inf  # an fp16 square above 65504: PolynomialFeatures + Ridge on raw diabetes
LOGITS = RNG.standard_normal((89, 10)) * 3
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
EMB = RNG.standard_normal((89, 16))
VALUES = {
    OutputKind.REGRESSION: REG,
    OutputKind.PROBABILITIES: PROBS,
    OutputKind.SCORES: LOGITS,
    OutputKind.EMBEDDING: EMB,
}
TABLES = {"same": SAME_KERNELS, "float32": FLOAT32, "fp16": FP16, "int8": INT8, "static": INT8_STATIC}


def _with(values, rows, value):
    broken = values.copy()
    broken[rows] = value
    return broken


@pytest.mark.parametrize("table", TABLES, ids=list(TABLES))
@pytest.mark.parametrize("kind", list(VALUES), ids=[k.value for k in VALUES])
@pytest.mark.parametrize("value,word", [(np.inf, "inf"), (np.nan, "NaN")], ids=["inf", "nan"])
def test_nonfinite_in_the_artifact_only_fails_every_criterion(table, kind, value, word):
    want = VALUES[kind]
    got = _with(want, [5, 17, 60], value) if want.ndim == 1 else want.copy()
    if want.ndim == 2:
        got[[5, 17, 60], 0] = value  # one element of three rows: judged element by element
    result = compare_one("y", want, got, kind, TABLES[table][kind])
    assert not result.passed
    assert f"3 of 89 rows give {word} in the artifact where the source is finite" in result.note
    assert [r["row"] for r in result.failing_rows] == [5, 17, 60]


def test_finite_in_the_artifact_where_the_source_is_not_fails():
    result = compare_one("y", OVERFLOW, REG, OutputKind.REGRESSION, INT8[OutputKind.REGRESSION])
    assert not result.passed and "3 of 89 rows are finite in the artifact where the source gives NaN/inf" in result.note


def test_labels_read_off_nonfinite_probabilities_fail():
    labels = np.argmax(PROBS, axis=1)
    broken = PROBS.copy()
    broken[[1, 2], :] = np.nan
    kinds = {"label": OutputKind.LABELS, "probabilities": OutputKind.PROBABILITIES}
    criteria = {"label": Agreement(0.9), "probabilities": INT8[OutputKind.PROBABILITIES]}
    label, probabilities = compare_outputs(
        {"label": labels, "probabilities": PROBS}, {"label": labels, "probabilities": broken}, criteria, kinds
    )
    assert not probabilities.passed and not label.passed
    assert "2 of 89 rows' labels come from probabilities that is NaN/inf in the artifact only" in label.note


@pytest.mark.parametrize(
    "want,got,kind,criterion,says",
    [
        (np.array([]), np.array([]), OutputKind.REGRESSION, FP16[OutputKind.REGRESSION], "no rows to compare"),
        (np.array([], dtype=object), np.array([], dtype=object), OutputKind.LABELS, Agreement(1.0), "no rows to compare"),
        (np.full(5, np.nan), np.full(5, np.nan), OutputKind.REGRESSION, FP16[OutputKind.REGRESSION], "every one of 5 row(s) is NaN/inf"),
        (np.full((4, 3), 1.0), np.full((4, 3), 1.0), OutputKind.SCORES, FP16[OutputKind.SCORES], "confident on none of 4 row(s)"),
    ],
    ids=["empty", "empty labels", "all NaN both sides", "all rows tied"],
)
def test_a_criterion_that_cannot_judge_fails_loudly(want, got, kind, criterion, says):
    result = compare_one("y", want, got, kind, criterion)
    assert not result.passed and "cannot judge" in result.note and says in result.note


def _mean_pooled_like(rows=40, width=384):
    """Rows like a mean-pooled sentence encoder's: every column a feature with its own offset and scale, not unit-norm,
    no column standing out per row (measured on MiniLM: the top value 2.6-3.7 standard deviations above the row mean)."""
    return RNG.standard_normal((rows, width)) * RNG.uniform(0.2, 1.0, width) + RNG.normal(0, 0.1, width)


def _logits_like(rows=40, width=1000):
    """A trained classifier's class scores: one class far above the rest in every row (an ImageNet-style head)."""
    scores = RNG.standard_normal((rows, width))
    scores[np.arange(rows), RNG.integers(0, width, rows)] += 12.0
    return scores


@pytest.mark.parametrize(
    "values,kind,why",
    [
        (_mean_pooled_like(), OutputKind.EMBEDDING, "no clear winner per row"),
        (_mean_pooled_like() * 7 + 3, OutputKind.EMBEDDING, "no clear winner per row"),
        (_logits_like(), OutputKind.SCORES, "clear winner"),
        (_logits_like(width=96), OutputKind.SCORES, "clear winner"),
        (LOGITS, OutputKind.SCORES, "10 columns"),
        (EMB / np.linalg.norm(EMB, axis=1, keepdims=True), OutputKind.EMBEDDING, "unit-norm rows"),
        (PROBS, OutputKind.PROBABILITIES, "sums to 1"),
        (REG, OutputKind.REGRESSION, "one column"),
    ],
    ids=["mean-pooled 384", "mean-pooled shifted", "logits 1000", "logits 96", "logits 10", "unit-norm", "probabilities", "regression"],
)
def test_value_rule_tells_wide_features_from_class_scores(values, kind, why):
    from packager.validation import infer_kind_why

    found, reason = infer_kind_why(values)
    assert found is kind and why in reason


def test_the_plugin_decides_before_the_values_and_the_report_says_which():
    from packager.evidence import decide_kinds

    expected = {"variable": REG, "output_0": _mean_pooled_like(), "label": np.arange(89) % 3}
    declared = {"variable": (OutputKind.REGRESSION, "LGBMRanker is a ranker"), "label": OutputKind.LABELS}
    kinds, rules = decide_kinds(declared, expected)
    assert kinds == {"variable": OutputKind.REGRESSION, "output_0": OutputKind.EMBEDDING, "label": OutputKind.LABELS}
    assert rules["variable"] == "plugin: LGBMRanker is a ranker" and rules["label"] == "plugin"
    assert rules["output_0"].startswith("values: 384 columns")


def test_parent_failure_fails_the_child_and_names_the_parents_reason():
    from packager.validation import build_report, with_parent

    good = compare_one("y", REG, REG + 1.0, OutputKind.REGRESSION, INT8[OutputKind.REGRESSION])
    off = compare_one("y", REG, REG + 1.0, OutputKind.REGRESSION, FLOAT32[OutputKind.REGRESSION])
    assert good.passed and not off.passed  # the same 1.0 error: within int8's criterion, not within fp32's
    child = build_report((good,), runtime="r", runtime_version="1", samples=89, data_source="sample", criteria={})
    parent = build_report((off,), runtime="r", runtime_version="1", samples=89, data_source="sample", criteria={})
    judged = with_parent(child, parent)
    assert judged.status == "failed" and judged.failures()[0].startswith("its fp32 parent already fails: y: max |diff|")
    assert with_parent(child, child).status == "passed"


def test_the_failure_hint_names_the_output_kind_flag_when_values_decided():
    from types import SimpleNamespace

    from packager.conversion import _failure_hint
    from packager.package import Quantization
    from packager.validation import build_report

    wide = _mean_pooled_like(89, 48)  # 48 columns: class scores by the value rule
    shuffled = wide + RNG.normal(0, 0.5, wide.shape)
    failed = compare_one("output_0", wide, shuffled, OutputKind.SCORES, INT8[OutputKind.SCORES])
    assert not failed.passed
    report = build_report((failed,), runtime="r", runtime_version="1", samples=89, data_source="sample", criteria={})
    evidence = SimpleNamespace(kind_rules={"output_0": "values: 48 columns of floats (class scores)"}, data_source="sample")
    hint = _failure_hint(report, "onnx", Quantization("dynamic", True), evidence, {})
    assert "say so with --output-kind output_0=embedding" in hint and "drop --quantize" in hint
    evidence = SimpleNamespace(kind_rules={"output_0": "plugin: DigitsNet"}, data_source="synthetic")
    hint = _failure_hint(report, "onnx", Quantization(None, False), evidence, {})
    assert "--output-kind" not in hint and "give --sample FILE" in hint


def test_each_regression_column_is_judged_against_its_own_spread():
    """Targets on different scales (y*1e5 beside y/50, a LinearRegression on diabetes): one float32 step of the large
    column (2.0 at 3e7) was divided by the small column's spread (0.97) and a good fp32 model failed (outside user)."""
    import numpy as np

    from packager.validation import RelativeToSpread

    rng = np.random.default_rng(0)
    y = rng.normal(150, 77, 200)
    want = np.stack([y * 1e5, y / 50], axis=1)
    got = want.astype(np.float32).astype(np.float64)  # the float32 rounding an ONNX graph gives
    assert RelativeToSpread(1e-3).check(want, got).passed
    off = got.copy()
    off[:, 1] += 0.01  # 1% of the small column's spread: its own error, not the large column's
    result = RelativeToSpread(1e-3).check(want, off)
    assert not result.passed and "spread 1.48" in result.note, result.note
