"""The issue-15 acceptance matrix, one test per cell (the cells and their re-check: tests/converters/boosting_matrix.py):
every boosting classifier and regressor, alone and in a ColumnTransformer pipeline, passes ONNX and PMML with labels
agreeing on every held-out row and regression within 1e-4 of the spread against float64 ``predict``, or is refused with
the stated reason (CatBoost to PMML)."""
from __future__ import annotations

import pytest

from tests.converters.boosting_matrix import CASES, REFUSED, run

pytest.importorskip("xgboost")
pytest.importorskip("lightgbm")
pytest.importorskip("catboost")
pytest.importorskip("onnxruntime")


def _cells():
    for case in CASES:
        yield pytest.param(case, "onnx", id=f"{case.id}-onnx", marks=[pytest.mark.slow] if case.shape == "pipeline" else [])
        yield pytest.param(case, "pmml", id=f"{case.id}-pmml", marks=[pytest.mark.slow, pytest.mark.java])


@pytest.mark.parametrize("case, target", list(_cells()))
def test_cell(case, target, tmp_path):
    outcome = run(case, target, tmp_path / "pkg")
    refusal = REFUSED.get((case.library, target, case.shape))
    if refusal:
        assert outcome.status == "refused" and refusal in outcome.detail, outcome.detail
        assert not (tmp_path / "pkg").exists()
        return
    assert outcome.status == "pass", outcome.detail
    if case.kind == "classifier":
        assert outcome.label_agreement == 1.0 and outcome.max_probability_diff <= 1e-4
    else:
        assert outcome.max_regression_ratio <= 1e-4
