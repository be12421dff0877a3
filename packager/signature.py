"""Model signatures: named, typed input/output tensors with a dynamic batch axis.

A signature is inferred from the model by its framework plugin, or from a user's sample, or given
as ``--input-shape``. Inputs travel through packager as *feeds*: ``{input name: numpy array}``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from packager.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

Feeds = Mapping[str, "np.ndarray"]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, numpy dtype name ("str" for text), shape (None = dynamic).

    ``names``: the feature (column) names of a (batch, n) matrix input, in the model's order, when the model knows them
    (scikit-learn's ``feature_names_in_``, or the columns of the user's sample). With names, a table is matched to the
    input by column name; without, by position (a CSV with its columns reordered then predicts garbage silently)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    names: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.names is not None:
            data["names"] = list(self.names)  # only when known: manifests without names read as before
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        names = data.get("names")
        return cls(data["name"], data["dtype"], tuple(data["shape"]), tuple(str(n) for n in names) if names else None)

    @property
    def is_text(self) -> bool:
        return self.dtype == "str"


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a model. ``columnar``: one (batch, 1) input per table column."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    columnar: bool = False

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def with_outputs(self, outputs: tuple[TensorSpec, ...]) -> "Signature":
        return Signature(self.inputs, tuple(outputs), self.columnar)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "columnar": self.columnar,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Signature":
        return cls(
            tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            tuple(TensorSpec.from_dict(s) for s in data.get("outputs", ())),
            bool(data.get("columnar", False)),
        )


def dtype_name(array: "np.ndarray") -> str:
    """numpy dtype -> signature dtype name; any text/object column is "str"."""
    kind = array.dtype.kind
    return "str" if kind in "OUS" else array.dtype.name


def spec_of(name: str, array: "np.ndarray") -> TensorSpec:
    return TensorSpec(name, dtype_name(array), (None, *array.shape[1:]))


# dtypes --input-shape may name (an allow-list: what every exporter here maps to a tensor type)
INPUT_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclass(frozen=True)
class ShapeSpec:
    """One ``--input-shape`` entry: its shape (None = dynamic) and the dtype it names, if any."""

    shape: tuple[int | None, ...]
    dtype: str | None = None


def parse_input_shape(text: str) -> dict[str, tuple[int | None, ...]]:
    """Parse ``--input-shape``: ``"1,20"`` or ``"ids:1,16;mask:1,16"``; ``-1``/``?`` = dynamic."""
    return {name: spec.shape for name, spec in parse_input_specs(text).items()}


def parse_input_specs(text: str) -> dict[str, ShapeSpec]:
    """Parse ``--input-shape`` with optional dtypes: ``"x:1,13;band:1:int64"`` (a name, sizes, then a dtype)."""
    shapes: dict[str, ShapeSpec] = {}
    for index, part in enumerate(p for p in text.split(";") if p.strip()):
        head, _, last = part.rpartition(":")
        dtype = None
        if last.strip() and not last.strip().lstrip("-").replace(",", "").replace("?", "").replace("None", "").isdigit():
            dtype = last.strip()
            if dtype not in INPUT_DTYPES:
                raise UsageError(
                    f"--input-shape {text!r}: {dtype!r} is not a dtype packager knows",
                    f"use one of {', '.join(INPUT_DTYPES)}, e.g. band:1:int64",
                )
            part = head
        name, _, dims = part.rpartition(":")
        try:
            shape = tuple(None if d.strip() in ("-1", "?", "None") else int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(
                f"--input-shape {text!r} is not a shape",
                "write comma-separated sizes, e.g. 1,20 or ids:1,16;mask:1,16 (-1 = dynamic; a dtype last: band:1:int64)",
            ) from None
        if any(d is not None and d <= 0 for d in shape):
            raise UsageError(f"--input-shape {text!r} has a non-positive size", "sizes must be > 0 or -1")
        shapes[name.strip() or f"input_{index}"] = ShapeSpec(shape, dtype)
    if not shapes:
        raise UsageError("--input-shape is empty", "give a shape such as 1,20")
    return shapes


def parse_dynamic_axes(text: str) -> dict[str | None, tuple[int, ...]]:
    """Parse ``--dynamic-axes``: ``"1"`` (the only input's axis 1) or ``"ids:1;mask:1,2"``. Axis 0
    (the batch) is always dynamic."""
    axes: dict[str | None, tuple[int, ...]] = {}
    for part in (p for p in text.split(";") if p.strip()):
        name, _, numbers = part.rpartition(":")
        try:
            found = tuple(int(a) for a in numbers.split(",") if a.strip())
        except ValueError:
            raise UsageError(
                f"--dynamic-axes {text!r} is not a list of axes", "write e.g. 1 or ids:1;mask:1 (axis numbers, 0 = batch)"
            ) from None
        if not found or any(a < 0 for a in found):
            raise UsageError(f"--dynamic-axes {text!r} has no valid axis", "axes are numbers >= 1, e.g. 1 for a sequence length")
        axes[name.strip() or None] = found
    return axes


def with_dynamic_axes(signature: Signature, axes: dict[str | None, tuple[int, ...]]) -> Signature:
    """The signature with the named axes made dynamic (None)."""
    if None in axes:
        if len(signature.inputs) != 1:
            raise UsageError(
                "--dynamic-axes without an input name, but the model has several inputs", f"name them: e.g. {signature.input_names[0]}:1"
            )
        axes = {signature.input_names[0]: axes[None]}
    unknown = set(axes) - set(signature.input_names)
    if unknown:
        raise UsageError(
            f"--dynamic-axes names unknown inputs {sorted(unknown, key=str)}", f"the model's inputs are {signature.input_names}"
        )
    specs = []
    for spec in signature.inputs:
        wanted = axes.get(spec.name, ())
        if any(a >= len(spec.shape) for a in wanted):
            raise UsageError(
                f"--dynamic-axes: input {spec.name} has {len(spec.shape)} axes, not {max(wanted) + 1}", "count axes from 0 (the batch)"
            )
        specs.append(replace(spec, shape=tuple(None if i in wanted else d for i, d in enumerate(spec.shape))))
    return Signature(tuple(specs), signature.outputs, signature.columnar)


def synthesize(signature: Signature, rows: int = 64, seed: int = 0, int_high: int = 10) -> dict[str, "np.ndarray"]:
    """Deterministic sample feeds for a signature when the user gave none; integers in [0, int_high)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in signature.inputs:
        shape = tuple(rows if i == 0 else (d or 8) for i, d in enumerate(spec.shape or (None,)))  # 8: any free length
        if spec.is_text:
            feeds[spec.name] = rng.choice(np.array(["a", "b", "c"], dtype=object), size=shape)
        elif np.dtype(spec.dtype).kind in "iu":
            feeds[spec.name] = rng.integers(0, int_high, size=shape).astype(spec.dtype)
        elif np.dtype(spec.dtype).kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def batch_size(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))
