"""The scikit-learn -> ONNX coverage walk: every estimator ends converted, or refused with a clear error."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_no_estimator_ends_in_an_unexplained_traceback(tmp_path):
    import sklearn_onnx_coverage as walk

    rows = walk.walk(tmp_path)
    unexplained = [r for r in rows if r["status"] == walk.UNEXPLAINED]
    assert unexplained == [], unexplained
    data = json.loads((tmp_path / "sklearn_onnx_coverage.json").read_text())
    assert sum(data["counts"].values()) == len(rows) > 150
    assert data["counts"][walk.VALIDATED] >= 90
    table = (tmp_path / "sklearn_onnx_coverage.md").read_text()
    assert "| LogisticRegression | classifier | converted+validated |" in table
