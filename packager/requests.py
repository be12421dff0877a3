"""One typed, frozen request per operation, built once where a call enters packager (the CLI, the Python API, the
server) and carried unchanged to the one worker that executes it (``packager.workers``), in this process or in the
sandbox child, where it arrives as plain JSON (``to_data`` / ``from_data``).

Why: the options of ``convert`` were spelled out in four layers (the command's 23 parameters, ``conversion.convert``'s
21, the sandbox's parent side and the child's), and every public call re-entered itself inside the child behind a
global "am I the child" flag. Now an option is a field here and the code that uses it; the CLI declares its flag from
the field's ``cli`` metadata (``packager.commands._options``), nothing else names it.

This module imports nothing of packager's: it is the vocabulary every layer shares, not a layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# rows given as a path (str), or in memory (an array, a DataFrame, a mapping of arrays): in-memory rows cross into the
# sandbox as .npy/.npz/.parquet files written by the parent (``sandbox.Workspace.data``), so the child sees a path
Rows = Any


def cli(*decls: str, **click_kwargs: Any) -> dict[str, Any]:
    """A field's command-line flag: click's declarations and keyword arguments, as data (``type="path"`` is a path
    option). Read by ``packager.commands._options``; this module does not import click."""
    return {"cli": {"decls": decls, **click_kwargs}}


# flags two requests share, declared once (convert and inspect build the signature the same way; convert and validate
# judge the same way)
INPUT_SHAPE = cli("--input-shape", help="Input shape(s) where the model carries none, e.g. 1,20 or ids:1,16;mask:1,16.")
DYNAMIC_AXES = cli("--dynamic-axes", help="Axes besides the batch that vary, e.g. 1 (sequence length) or ids:1;mask:1 (PyTorch sources).")
MODEL_CLASS = cli(
    "--model-class", metavar="MODULE:CLASS", help="For a PyTorch state dict: the nn.Module class (or factory) to load the weights into."
)
TOLERANCE = cli("--tolerance", multiple=True, metavar="NAME=ATOL[,RTOL]", help="Judge this output by an absolute tolerance instead.")


@dataclass(frozen=True, kw_only=True)
class ConvertRequest:
    """``packager convert``: one source to one target (``to``, written to ``out``) or to several (``targets``, each
    written to ``out/TARGET``, the source loaded once)."""

    path: str | None = None  # None: an object given in memory to the Python API (never crosses into the sandbox)
    to: str = "onnx"
    targets: tuple[str, ...] = ()
    out: str | None = None
    quantize: str | None = field(
        default=None,
        metadata=cli(
            "--quantize",
            is_flag=False,
            flag_value="dynamic",
            metavar="[dynamic|static|fp16|weights|auto]",
            help="Quantize the result; bare --quantize means dynamic int8; weights = 8-bit weights only (Core ML).",
        ),
    )
    calibration: Rows = field(
        default=None, metadata=cli("--calibration", type="path", help="Calibration rows for --quantize static (.npy/.csv/.parquet).")
    )
    sample: Rows = field(
        default=None, metadata=cli("--sample", type="path", help="Sample inputs for the signature and validation (.npy/.csv/.parquet).")
    )
    input_shape: str | None = field(default=None, metadata=INPUT_SHAPE)
    dynamic_axes: Any = field(default=None, metadata=DYNAMIC_AXES)
    model_class: str | None = field(default=None, metadata=MODEL_CLASS)
    task: str | None = field(
        default=None,
        metadata=cli(
            "--task",
            help="Hugging Face folders: feature-extraction, sequence-classification, token-classification or "
            "image-classification (default: the config's architecture).",
        ),
    )
    plugin_options: Mapping[str, Any] = field(default_factory=dict)
    opset: int | str | None = field(
        default=None,
        metadata=cli(
            "--opset",
            metavar="N[,DOMAIN=N]",
            help="ONNX opset to target (default: the converter's), e.g. 17 or 17,ai.onnx.ml=3 (scikit-learn).",
        ),
    )
    output_kind: tuple[str, ...] | Mapping[str, Any] | None = field(  # NAME=KIND strings, or the API's {name: OutputKind}
        default=None,
        metadata=cli(
            "--output-kind",
            multiple=True,
            metavar="NAME=KIND",
            help="How to judge an output: labels, probabilities, scores, regression, embedding or integer (repeatable).",
        ),
    )
    tolerance: tuple[str, ...] | Mapping[str, Any] | None = field(  # NAME=ATOL[,RTOL] strings, or {name: Criterion}
        default=None, metadata=TOLERANCE
    )
    min_agreement: float | None = field(
        default=None,
        metadata=cli("--min-agreement", type=float, help="Fraction of rows whose label / best class must agree (overrides the format's)."),
    )
    accept_mismatch: bool = field(
        default=False,
        metadata=cli("--accept-mismatch", is_flag=True, help="Keep an artifact that fails validation (recorded in the manifest)."),
    )
    overwrite: bool = field(default=False, metadata=cli("--force", "overwrite", is_flag=True, help="Replace an existing output directory."))
    # what the parent learned fetching a URI source (``packager.sources``), for the manifest's source details: it crosses
    # here, not in the fetched folder, which a local folder could forge (issue 25)
    lineage: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PackageRequest:
    """A source model packaged as it is (``convert --push`` stores the source first, as the root of the lineage)."""

    path: str
    out: str
    sample: Rows = None
    input_shape: str | None = None
    model_class: str | None = None
    task: str | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)  # as ConvertRequest.lineage


@dataclass(frozen=True, kw_only=True)
class InspectRequest:
    """``packager inspect``: what a file is, and its signature when the options given let one be built."""

    path: str
    sample: Rows = field(
        default=None,
        metadata=cli("--sample", type="path", help="Sample inputs, for models that carry no input shapes (.npy/.npz/.csv/.parquet)."),
    )
    input_shape: str | None = field(default=None, metadata=INPUT_SHAPE)
    dynamic_axes: str | None = field(default=None, metadata=DYNAMIC_AXES)
    model_class: str | None = field(default=None, metadata=MODEL_CLASS)
    lineage: Mapping[str, Any] = field(default_factory=dict)  # as ConvertRequest.lineage


@dataclass(frozen=True, kw_only=True)
class CheckRequest:
    """The static checks of one format on one file (a registry push checks what it stores)."""

    path: str
    fmt: str


@dataclass(frozen=True, kw_only=True)
class ValidateRequest:
    """``packager validate``: an artifact judged against the source's own outputs."""

    artifact: str
    source: str = field(metadata=cli("--source", required=True, type="path", help="The source model file the artifact was made from."))
    sample: Rows = field(
        default=None, metadata=cli("--sample", type="path", help="Sample inputs (.npy/.csv/.parquet); synthesized when absent.")
    )
    quantization: str | None = field(
        default=None,
        metadata=cli(
            "--quantized",
            "quantization",
            choices=("dynamic", "static", "fp16"),
            help="Use this quantization mode's tolerance (default: from manifest.json).",
        ),
    )
    atol: float | None = field(default=None, metadata=cli("--atol", type=float, help="Override the absolute tolerance."))
    rtol: float | None = field(default=None, metadata=cli("--rtol", type=float, help="Override the relative tolerance."))
    tolerance: tuple[str, ...] | Mapping[str, Any] | None = field(default=None, metadata=TOLERANCE)
    min_agreement: float | None = field(
        default=None, metadata=cli("--min-agreement", type=float, help="Fraction of rows whose label / best class must agree.")
    )
    output_kind: tuple[str, ...] | Mapping[str, Any] | None = field(
        default=None,
        metadata=cli(
            "--output-kind", multiple=True, metavar="NAME=KIND", help="labels, probabilities, scores, regression, embedding, integer."
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PredictRequest:
    """``packager predict``: a package folder or a model file (a registry reference is pulled before), streamed over
    ``data`` into ``output``."""

    model: str
    data: str
    output: str = field(
        metadata=cli(
            "-o",
            "--out",
            "output",
            type="path",
            required=True,
            help="Output file (.parquet, .csv or .npy); with --engine dask or spark, a folder of Parquet parts.",
        )
    )
    batch_size: int = field(
        default=1024, metadata=cli("--batch-size", show_default=True, help="Rows per batch (memory stays at one batch).")
    )
    threads: int | None = field(
        default=None, metadata=cli("--threads", type=int, help="Threads for the runtime (default: the runtime's own choice).")
    )
    outputs: tuple[str, ...] = field(
        default=(), metadata=cli("--output", "outputs", multiple=True, metavar="NAME", help="Write only these outputs (repeatable).")
    )
    overwrite: bool = field(default=False, metadata=cli("--force", "overwrite", is_flag=True, help="Replace an existing output."))
    text_column: str | None = field(
        default=None,
        metadata=cli(
            "--text-column", metavar="NAME", help="Text in this column, tokenized with the package's tokenizer (Hugging Face packages)."
        ),
    )
    keep_columns: tuple[str, ...] = field(
        default=(),
        metadata=cli(
            "--keep-columns",
            metavar="A,B",
            split=",",
            help="Input columns (an id, a timestamp) copied into each output row, first: comma-separated names "
            "(.parquet/.csv/.jsonl/.npz in).",
        ),
    )


@dataclass(frozen=True)
class BenchSettings:
    """How ``packager bench`` measures (the same for every artifact of a run); crosses in ``BenchRequest.settings``."""

    batch_sizes: tuple[int, ...] = field(
        default=(1, 32, 1024, 16384),
        metadata=cli("--batch-sizes", split=",", item=int, show_default=True, help="Comma-separated batch sizes."),
    )
    threads: int = field(default=1, metadata=cli("--threads", show_default=True, help="Threads for every runtime (fixed and recorded)."))
    warmup: int = 3
    min_runs: int = 10
    min_seconds: float = field(
        default=0.5, metadata=cli("--min-seconds", show_default=True, help="Measure each batch size at least this long.")
    )
    max_seconds: float = 5.0  # per batch size: slow models stop after min(3, ...) runs past this
    text_column: str | None = field(  # the data's texts, tokenized per batch size (transformer packages and folders)
        default=None,
        metadata=cli(
            "--text-column",
            help="Benchmark on the texts of this column, tokenized per batch (packages that carry a tokenizer, "
            "Hugging Face folders as --baseline).",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class BenchRequest:
    """One ``packager bench`` measurement: a baseline (the source in its framework) or an artifact, over ``data``."""

    kind: str  # "baseline" or "artifact"
    path: str
    data: str = field(
        metadata=cli("--data", type="path", required=True, help="Input rows (.parquet, .csv, .npy, .npz: one array per input, .jsonl).")
    )
    model_class: str | None = field(default=None, metadata=MODEL_CLASS)
    settings: Mapping[str, Any] = field(default_factory=dict)  # ``BenchSettings`` as a dict


Request = ConvertRequest | PackageRequest | InspectRequest | CheckRequest | ValidateRequest | PredictRequest | BenchRequest
R = TypeVar("R", ConvertRequest, PackageRequest, InspectRequest, CheckRequest, ValidateRequest, PredictRequest, BenchRequest)


class MalformedRequest(ValueError):
    """A request that is not this operation's fields (a bug of the side that wrote it: both sides are packager)."""


def to_data(request: Request) -> dict[str, Any]:
    """The request as JSON-ready data: tuples become lists, mappings dicts; anything else must already be plain."""
    return {f.name: _plain(getattr(request, f.name)) for f in dataclasses.fields(request)}


def from_data(cls: type[R], data: Any) -> R:
    """The request ``to_data`` wrote; an unknown or missing field is refused, lists of tuple fields become tuples."""
    if not isinstance(data, Mapping):
        raise MalformedRequest(f"a {cls.__name__} must be a JSON object, not {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise MalformedRequest(f"{cls.__name__} has no field {unknown[0]!r}")
    values: dict[str, Any] = {name: tuple(v) if isinstance(v, list) and _is_tuple(fields[name]) else v for name, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise MalformedRequest(f"{cls.__name__}: {exc}") from None


def _is_tuple(f: dataclasses.Field[Any]) -> bool:
    return str(f.type).startswith("tuple")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
