"""Matching a table's columns to a model's features by name.

A model that knows its feature names (scikit-learn's ``feature_names_in_``, or the columns of the sample it was
converted with: ``TensorSpec.names``) reads a table by those names, whatever the column order: the breast-cancer
pipeline fed its 30 columns in reverse order by position agreed with the source on 37% of rows (measured), with no error. Missing
names are refused, extra columns ignored with a note; only a model without names is fed by position, and says so.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Sequence

from packager.errors import PackagerWarning, UsageError
from packager.signature import Signature, TensorSpec

SHOWN = 10  # names listed in a message before "…"


def match_names(
    names: Sequence[str], columns: Sequence[str], where: str, *, notes: bool = True, ignored: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """The columns to read, in the model's order. A name matches its column exactly, or else the one column that reads the
    same with every character outside [A-Za-z0-9_] as "_": LightGBM records breast-cancer's "mean radius" as
    "mean_radius" while users feed the dataset's own columns (measured: every target refused before). Missing ones raise a
    one-line UsageError naming them; extra ones are ignored with a one-line warning (``notes=False``: silently, for the
    per-partition calls of a cluster job)."""
    have = set(columns)
    by_plain: dict[str, list[str]] = {}
    for column in columns:
        by_plain.setdefault(_plain(column), []).append(column)
    chosen: list[str] = []
    missing: list[str] = []
    for name in names:
        candidates = [name] if name in have else by_plain.get(_plain(name), [])
        (chosen if len(candidates) == 1 else missing).append(candidates[0] if len(candidates) == 1 else name)
    if missing:
        raise UsageError(
            f"{where} lacks the column{'s' if len(missing) > 1 else ''} {_listed(missing)} the model needs",
            f"the model reads its features by name: give columns named {_listed(list(names))}",
        )
    wanted = set(chosen)
    extra = [c for c in columns if c not in wanted and c not in ignored]
    if extra and notes:
        warnings.warn(
            f"{where}: ignoring column{'s' if len(extra) > 1 else ''} {_listed(extra)} the model does not take",
            PackagerWarning,
            stacklevel=3,
        )
    return tuple(chosen)


def restore_onnx_input_names(proto: Any, names: Sequence[str], where: str) -> None:
    """Give an ONNX graph's inputs back the model's own column names, in place. Converters rename inputs whose names
    hold characters outside [A-Za-z0-9_]: onnxmltools turns Spark's "mean radius" into "mean_radius", skl2onnx turns
    load_wine(as_frame=True)'s "od280/od315_of_diluted_wines" into "od280_od315_of_diluted_wines", and validation then
    fed the user's name to a graph that wanted the other ("the sample lacks ...", exit 4). One fix for every converter:
    each graph input is matched to its column as :func:`match_names` matches a table's columns."""
    graph_names = [i.name for i in proto.graph.input]
    columns = match_names(graph_names, list(names), where, notes=False)
    renamed = {old: new for old, new in zip(graph_names, columns, strict=True) if old != new}
    if not renamed:
        return
    for tensor in proto.graph.input:
        tensor.name = renamed.get(tensor.name, tensor.name)
    for node in proto.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]


def _plain(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def by_position_note(where: str, count: int) -> None:
    """Said once per input file: the model has no feature names, so columns are taken in file order."""
    warnings.warn(
        f"{where}: the model records no feature names, so its {count} columns are matched by position", PackagerWarning, stacklevel=3
    )


def named_matrix(signature: Signature) -> TensorSpec | None:
    """The one (batch, n) matrix input that carries feature names, if the signature is of that shape."""
    if len(signature.inputs) != 1 or signature.columnar:
        return None
    spec = signature.inputs[0]
    return spec if spec.names and len(spec.shape) == 2 else None


def align_table(signature: Signature, data: Any, where: str) -> Any:
    """A table sample (pandas DataFrame) reordered to the model's feature names, extras dropped; anything else as
    given. A model without names gets the table as it is (by position, as before)."""
    spec = named_matrix(signature)
    if spec is None or not hasattr(data, "columns"):
        return data
    columns = [str(c) for c in data.columns]
    order = match_names(spec.names or (), columns, where)
    return data.set_axis(columns, axis=1)[list(order)].set_axis(list(spec.names or ()), axis=1)


def with_sample_names(signature: Signature, data: Any) -> Signature:
    """A single numeric matrix input without names takes the names of the sample table's columns (when they are text
    and as many as the input's width): the order the model was validated in is the order predict will restore. A text
    input (one string column) keeps its own name: its column is found by name or as the only text column."""
    if len(signature.inputs) != 1 or signature.columnar or not hasattr(data, "columns"):
        return signature
    spec = signature.inputs[0]
    columns = list(data.columns)
    if spec.names or spec.is_text or len(spec.shape) != 2 or spec.shape[1] != len(columns) or not all(isinstance(c, str) for c in columns):
        return signature
    if len(set(columns)) != len(columns):
        return signature
    from dataclasses import replace

    return Signature((replace(spec, names=tuple(columns)),), signature.outputs, signature.columnar)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(str(n) for n in names[:SHOWN])
    return f"[{shown}{', …' if len(names) > SHOWN else ''}]"
