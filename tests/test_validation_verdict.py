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
