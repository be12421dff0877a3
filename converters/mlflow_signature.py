"""An MLmodel's ``signature`` (MLflow's schema) read as packager's signature: split from converters/mlflow.py (the
folder checks, flavors and runtime) because translating MLflow's column and tensor schemas is a job of its own."""

from __future__ import annotations

import json
from typing import Any, Mapping

from packager.errors import InputFileError


def tensor_dtype(meta: Mapping[str, Any]) -> str | None:
    try:
        inputs = json.loads((meta.get("signature") or {}).get("inputs") or "[]")
        return str(inputs[0]["tensor-spec"]["dtype"]) if len(inputs) == 1 and inputs[0].get("type") == "tensor" else None
    except (ValueError, KeyError, TypeError, IndexError):
        return None


# MLflow's column types (mlflow.types.DataType) -> signature dtypes; a type not here (binary, datetime, objects) keeps
# what the owning plugin inferred
COLUMN_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool", "string": "str"}


def mlmodel_signature(meta: Mapping[str, Any], inferred: Any) -> Any:
    """The MLmodel's ``signature.inputs`` (MLflow's schema) laid over the owning plugin's ``inferred`` signature: the
    column names and types (a column schema) or the tensor names and dtypes (a tensor schema) are the MLmodel's; the
    layout and shapes (one matrix or one input per column) stay the plugin's, which its converters read. A schema that
    contradicts the model (another number of columns or tensors, other column names, another fixed size) is refused;
    one that is absent, unreadable or describes the pipeline's texts (mlflow.transformers) leaves the plugin's."""
    from dataclasses import replace

    import numpy as np

    try:
        schema = json.loads((meta.get("signature") or {}).get("inputs") or "[]")
    except (ValueError, TypeError, AttributeError):
        return inferred
    if not isinstance(schema, list) or not schema or not all(isinstance(c, dict) for c in schema):
        return inferred
    inputs = list(inferred.inputs)
    if all(c.get("type") == "tensor" for c in schema):
        if len(schema) != len(inputs):
            raise _contradiction(meta, f"{len(schema)} input tensors", f"{len(inputs)}")
        named = {str(c.get("name")): c for c in schema if c.get("name")}
        if len(inputs) > 1 and set(named) != {spec.name for spec in inputs}:
            return inferred  # several tensors not named as the model names them: which is which cannot be told
        pairs = [(spec, named[spec.name]) for spec in inputs] if len(inputs) > 1 else [(inputs[0], schema[0])]
        return replace(inferred, inputs=tuple(_tensor(meta, spec, column) for spec, column in pairs))
    columns = [(str(c.get("name", "")), COLUMN_TYPES.get(str(c.get("type")))) for c in schema]
    if any(t == "str" for _, t in columns) and not any(spec.is_text for spec in inputs):
        return inferred  # texts the flavor's pipeline tokenizes (mlflow.transformers): the model itself takes token ids
    if inferred.columnar or len(inputs) > 1:  # one input per column, in the plugin's order: matched by name
        declared = dict(columns)
        if set(declared) != {spec.name for spec in inputs}:
            unknown = sorted(set(declared) - {spec.name for spec in inputs})[:3]
            missing = sorted({spec.name for spec in inputs} - set(declared))[:3]
            raise _contradiction(meta, f"{len(columns)} columns (not in the model: {unknown})", f"{len(inputs)} (not declared: {missing})")
        return replace(inferred, inputs=tuple(replace(spec, dtype=declared[spec.name] or spec.dtype) for spec in inputs))
    (spec,) = inputs
    width = spec.shape[-1] if len(spec.shape) == 2 else None
    if width is not None and width != len(columns):
        raise _contradiction(meta, f"{len(columns)} columns", f"{width} features")
    types = {t for _, t in columns}
    numeric = None not in types and "str" not in types
    common: str | None = str(np.result_type(*types)) if numeric and len(types) > 1 else (types.pop() if len(types) == 1 else None)
    names = tuple(n for n, _ in columns) if all(n for n, _ in columns) else spec.names
    return replace(inferred, inputs=(replace(spec, dtype=common or spec.dtype, names=names),))


def _tensor(meta: Mapping[str, Any], spec: Any, column: Mapping[str, Any]) -> Any:
    """One input as an MLmodel tensor spec declares it: its name and dtype; the shape stays the plugin's (what its
    converter exports), and a fixed size the MLmodel contradicts is refused (validation rows are drawn in that shape)."""
    from dataclasses import replace

    tensor = column.get("tensor-spec") or {}
    shape = tensor.get("shape")
    if isinstance(shape, list) and len(shape) == len(spec.shape) and all(isinstance(d, int) for d in shape):
        if any(d >= 0 and s is not None and d != s for d, s in zip(shape, spec.shape, strict=True)):
            raise _contradiction(meta, f"a tensor of shape {shape}", f"{[-1 if s is None else s for s in spec.shape]}")
    name = str(column.get("name") or spec.name)
    return replace(spec, name=name, dtype=_known_dtype(str(tensor.get("dtype", spec.dtype)), spec.dtype))


def _known_dtype(dtype: str, fallback: str) -> str:
    from packager.signature import INPUT_DTYPES

    return dtype if dtype in INPUT_DTYPES or dtype == "str" else fallback


def _contradiction(meta: Mapping[str, Any], declared: str, takes: str) -> InputFileError:
    return InputFileError(
        f"the MLmodel's signature declares {declared}, but its model takes {takes}",
        "the MLmodel does not describe its model: re-log it with MLflow (mlflow.models.infer_signature)",
    )
