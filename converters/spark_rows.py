"""Validation rows drawn from what a fitted Spark pipeline knows, when the user gives no ``--sample``.

Text columns cycle through their StringIndexer's labels (every category is seen, in the fitted order). Numeric columns
take values on both sides of every split threshold the tree stages use on them (read from ``toDebugString``), or the
mean and spread a StandardScaler learnt; both are mapped back to columns through the VectorAssembler's inputs, as far
as each input's width is known (a raw column or an index is 1 wide, a one-hot vector its category count). A column no
stage tells anything about gets standard-normal values, and then the rows are called "synthetic", not "fitted-statistics"
(found by an outside user: a wine LR pipeline's rows were all N(0,1), never reached class 0, and were reported as fitted).
"""

from __future__ import annotations

import re
from typing import Any

SPLIT = re.compile(r"feature (\d+) (?:<=|>) (-?[0-9.eE+-]+)")


def fitted_rows(stages: list[Any], signature: Any, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    labels, thresholds, scaled = _labels(stages), _thresholds(stages), _scaler_stats(stages)
    frame: dict[str, Any] = {}
    for spec in signature.inputs:
        if spec.is_text:
            values = labels.get(spec.name) or ["a"]
            frame[spec.name] = [values[i % len(values)] for i in range(rows)]
        elif thresholds.get(spec.name):
            cuts = np.array(sorted(thresholds[spec.name]))
            gap = max(float(np.ptp(cuts)) / 20, 1e-3)
            frame[spec.name] = rng.choice(cuts, rows) + rng.choice([-1.0, 1.0], rows) * rng.uniform(0.05, 1.0, rows) * gap
        elif spec.name in scaled:
            mean, std = scaled[spec.name]
            frame[spec.name] = rng.normal(mean, std, rows)
        else:
            frame[spec.name] = rng.standard_normal(rows)
    return pd.DataFrame(frame)


def informed(stages: list[Any], signature: Any) -> bool:
    """Whether every input column got its values from something the pipeline learnt (else the rows are synthetic)."""
    known = set(_labels(stages)) | set(_thresholds(stages)) | set(_scaler_stats(stages))
    return all(spec.name in known for spec in signature.inputs)


def _labels(stages: list[Any]) -> dict[str, list[str]]:
    found = {}
    for stage in stages:
        if type(stage).__name__ == "StringIndexerModel" and stage.isDefined(stage.inputCol):
            found[stage.getInputCol()] = [str(v) for v in stage.labelsArray[0]]
    return found


def _positions(stages: list[Any], upto: int) -> tuple[list[str | None], str]:
    """The raw column at each position of the vector the last VectorAssembler before stage ``upto`` builds (None for a
    slot that is not a raw column), as far as widths are known; and that assembler's output column."""
    widths: dict[str, int] = {}  # derived columns whose width is known
    positions: list[str | None] = []
    output = ""
    for stage in stages[:upto]:
        name = type(stage).__name__
        if name == "StringIndexerModel" and stage.isDefined(stage.outputCol):
            widths[stage.getOutputCol()] = 1
        elif name == "OneHotEncoderModel" and stage.isDefined(stage.outputCols):
            drop = 1 if stage.getDropLast() else 0
            widths.update({col: size - drop for col, size in zip(stage.getOutputCols(), stage.categorySizes, strict=True)})
        elif name == "VectorAssembler":
            positions, output = [], stage.getOutputCol()
            for column in stage.getInputCols():
                if column in widths:
                    positions += [None] * widths[column]
                elif _is_derived(stages[:upto], column):
                    break  # a vector of unknown width: later slots cannot be placed
                else:
                    positions.append(column)
    return positions, output


def _is_derived(stages: list[Any], column: str) -> bool:
    for stage in stages:
        for param in ("outputCol", "outputCols"):
            if stage.hasParam(param) and stage.isDefined(stage.getParam(param)):
                value = stage.getOrDefault(stage.getParam(param))
                if column == value or (isinstance(value, list) and column in value):
                    return True
    return False


def _thresholds(stages: list[Any]) -> dict[str, set[float]]:
    """Split thresholds per raw column: tree features are positions in the VectorAssembler's output."""
    found: dict[str, set[float]] = {}
    for index, stage in enumerate(stages):
        debug = getattr(stage, "toDebugString", None)
        if not isinstance(debug, str):
            continue
        positions, _ = _positions(stages, index)
        for feature, value in SPLIT.findall(debug):
            column = positions[int(feature)] if int(feature) < len(positions) else None
            if column is not None:
                found.setdefault(column, set()).add(float(value))
    return found


def _scaler_stats(stages: list[Any]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation per raw column from a StandardScaler over the assembled vector."""
    found: dict[str, tuple[float, float]] = {}
    for index, stage in enumerate(stages):
        if type(stage).__name__ != "StandardScalerModel":
            continue
        positions, output = _positions(stages, index)
        if stage.getInputCol() != output:
            continue
        mean, std = stage.mean.toArray(), stage.std.toArray()
        for slot, column in enumerate(positions[: len(mean)]):
            if column is not None:
                found[column] = (float(mean[slot]), float(std[slot]) or 1.0)
    return found
