"""Validation rows drawn from what a fitted Spark pipeline knows, when the user gives no ``--sample``.

Text columns cycle through their StringIndexer's labels (every category is seen, in the fitted order). Numeric columns
take values on both sides of every split threshold the tree stages use on them (read from ``toDebugString`` and
mapped back to columns through the VectorAssembler's inputs), or the mean and spread a StandardScaler learnt; a column
no stage tells anything about gets standard-normal values.
"""

from __future__ import annotations

import re
from typing import Any

SPLIT = re.compile(r"feature (\d+) (?:<=|>) (-?[0-9.eE+-]+)")


def fitted_rows(stages: list[Any], signature: Any, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    labels = _labels(stages)
    thresholds = _thresholds(stages)
    frame: dict[str, Any] = {}
    for spec in signature.inputs:
        if spec.is_text:
            values = labels.get(spec.name) or ["a"]
            frame[spec.name] = [values[i % len(values)] for i in range(rows)]
        elif thresholds.get(spec.name):
            cuts = np.array(sorted(thresholds[spec.name]))
            gap = max(float(np.ptp(cuts)) / 20, 1e-3)
            frame[spec.name] = rng.choice(cuts, rows) + rng.choice([-1.0, 1.0], rows) * rng.uniform(0.05, 1.0, rows) * gap
        else:
            frame[spec.name] = rng.standard_normal(rows)
    return pd.DataFrame(frame)


def _labels(stages: list[Any]) -> dict[str, list[str]]:
    found = {}
    for stage in stages:
        if type(stage).__name__ == "StringIndexerModel" and stage.isDefined(stage.inputCol):
            found[stage.getInputCol()] = [str(v) for v in stage.labelsArray[0]]
    return found


def _thresholds(stages: list[Any]) -> dict[str, set[float]]:
    """Split thresholds per raw column: tree features are positions in the last VectorAssembler's inputs."""
    assembled: list[str] = []
    found: dict[str, set[float]] = {}
    for stage in stages:
        if type(stage).__name__ == "VectorAssembler":
            assembled = list(stage.getInputCols())
        debug = getattr(stage, "toDebugString", None)
        if isinstance(debug, str) and assembled:
            for index, value in SPLIT.findall(debug):
                if int(index) < len(assembled):
                    found.setdefault(assembled[int(index)], set()).add(float(value))
    return found
