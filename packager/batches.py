"""Streaming tabular and array data in fixed-size batches, and turning a batch into model feeds.

Memory stays bounded by the batch size whatever the file size: Parquet is read row group by row
group, CSV and JSON Lines block by block (pyarrow), .npy through a memory map. Columns are matched
to the signature by name, and every mismatch is found before any batch is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from packager.errors import InputFileError, UsageError, first_line
from packager.signature import Signature, TensorSpec

INPUT_SUFFIXES = (".csv", ".parquet", ".npy", ".npz", ".jsonl")
OUTPUT_SUFFIXES = (".parquet", ".csv", ".npy")


@dataclass(frozen=True)
class DataSource:
    """An input file: its kind, column names (tables) or array shape (.npy), and row count when cheap to know."""

    path: Path
    kind: str  # "parquet", "csv", "jsonl", "npy" or "npz" (one array per input; its names are the columns)
    columns: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    rows: int | None = None
    tensor_columns: frozenset[str] = frozenset()  # columns holding a list (a tensor) per row: Parquet/JSON lines only


def open_source(path: str | Path) -> DataSource:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file {path} does not exist", "check the path")
    kind = path.suffix.lower().lstrip(".")
    if f".{kind}" not in INPUT_SUFFIXES:
        raise UsageError(f"input {path.name} has an unsupported type .{kind}", f"use one of {', '.join(INPUT_SUFFIXES)}")
    try:
        return _describe(path, kind)
    except Exception as exc:
        raise InputFileError(
            f"cannot read {path.name} as {kind} ({type(exc).__name__}: {first_line(exc)})", f"check that it is a valid {kind} file"
        ) from exc


def _describe(path: Path, kind: str) -> DataSource:
    if kind == "npy":
        import numpy as np

        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return DataSource(path, kind, shape=tuple(array.shape), rows=int(array.shape[0]))
    if kind == "npz":
        return _describe_npz(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path)
        schema = meta.schema_arrow
        return DataSource(path, kind, columns=tuple(schema.names), rows=meta.metadata.num_rows, tensor_columns=_list_columns(schema))
    first = next(_table_batches(path, kind, 1 << 16), None)
    if first is None:
        return DataSource(path, kind)
    return DataSource(path, kind, columns=tuple(first.schema.names), tensor_columns=_list_columns(first.schema))


def _describe_npz(path: Path) -> DataSource:
    """An .npz as ``convert --sample`` takes it: one array per model input, all with the same number of rows."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        shapes = {name: archive[name].shape for name in archive.files}
    counts = {name: shape[0] if shape else 0 for name, shape in shapes.items()}
    if not shapes or len(set(counts.values())) != 1:
        raise UsageError(f"{path.name} holds arrays with different row counts {counts}", "give every input the same number of rows")
    return DataSource(path, "npz", columns=tuple(shapes), rows=int(next(iter(counts.values()))))


def _list_columns(schema: Any) -> frozenset[str]:
    import pyarrow as pa

    return frozenset(
        f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)
    )


def iter_batches(source: DataSource, batch_size: int, column_types: dict[str, Any] | None = None) -> Iterator[Any]:
    """pyarrow RecordBatches (tables) or numpy slices (.npy) of at most ``batch_size`` rows.

    ``column_types`` (from ``FeedPlan.column_types``) fixes how CSV and JSON lines columns are parsed:
    inferred from the first block, a column of whole numbers would fail on a later 1.5."""
    if source.kind == "npy":
        import numpy as np

        array = np.load(source.path, mmap_mode="r", allow_pickle=False)
        for start in range(0, array.shape[0], batch_size):
            yield np.array(array[start : start + batch_size])  # a writable copy: torch refuses read-only memory
        return
    if source.kind == "npz":
        yield from _npz_batches(source.path, batch_size)
        return
    batches = _reading(source, _table_batches(source.path, source.kind, batch_size, column_types))
    # Parquet already yields batch_size rows (fewer at row-group ends): re-cutting would only cost
    yield from batches if source.kind == "parquet" else _rebatch(batches, batch_size)


def _npz_batches(path: Path, batch_size: int) -> Iterator[dict[str, Any]]:
    """{array name: rows} batches. numpy memory-maps no .npz member: each array is read whole, once (an .npz is the
    sample-sized format of multi-input models; Parquet list columns stream any size)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    rows = len(next(iter(arrays.values())))
    for start in range(0, rows, batch_size):
        yield {name: np.array(array[start : start + batch_size]) for name, array in arrays.items()}


def _reading(source: DataSource, batches: Iterator[Any]) -> Iterator[Any]:
    """A bad value deep in a file is found mid-stream: say where, as an input error."""
    try:
        yield from batches
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise InputFileError(
            f"cannot read {source.path.name} to the end ({first_line(exc)})",
            "fix the value, or convert the file to Parquet with explicit column types",
        ) from exc


def _table_batches(path: Path, kind: str, batch_size: int, column_types: dict[str, Any] | None = None) -> Iterator[Any]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        # pre_buffer=False: with it, pyarrow keeps every read range cached and RSS grows to the file size
        yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size)
    elif kind == "csv":
        import pyarrow.csv as pcsv

        yield from pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pcsv.ConvertOptions(column_types=column_types or {}),
        )
    else:
        import pyarrow as pa
        import pyarrow.json as pjson

        schema = pa.schema(list(column_types.items())) if column_types else None
        parse = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        yield from pjson.open_json(path, read_options=pjson.ReadOptions(block_size=BLOCK_BYTES), parse_options=parse)


# CSV blocks of 1 MB: pyarrow's reader keeps several blocks in flight, so peak RSS follows the block size
# (233 MB CSV, 30 float columns: 8 MB blocks 458 MB peak against 283 MB for the same rows from Parquet,
# 2 MB 284 MB, 1 MB 220 MB and no slower; benchmarks/predict_streaming.py measures both paths side by
# side). JSON lines keep 8 MB blocks, since one line must fit in a block.
CSV_BLOCK_BYTES = 1 << 20
BLOCK_BYTES = 8 << 20


def _rebatch(batches: Iterator[Any], size: int) -> Iterator[Any]:
    """Re-cut a stream of RecordBatches into batches of ``size`` rows (zero-copy slices, one concat per batch)."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == size:
                yield _concat(pa, pending)
                pending, held = [], 0
    if held:
        yield _concat(pa, pending)


def _concat(pa: Any, parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


# ---------------------------------------------------------------- matching data to a signature


@dataclass(frozen=True)
class FeedPlan:
    """How a batch becomes feeds: which columns make which input."""

    signature: Signature
    columns: dict[str, tuple[str, ...]]  # input name -> table columns ((): the .npy array)
    tensors: frozenset[str] = frozenset()  # inputs fed from one list column (a tensor per row), not from scalar columns
    full_precision: bool = False  # the source model itself: floats stay as read (float64), never cast to the signature's

    def _dtype(self, spec: TensorSpec, values: Any) -> Any:
        """The dtype ``values`` are fed as: the signature's, except floats for the source model itself (a
        HistGradientBoostingRegressor fed float32 was 0.83-3.17 off its own predict on raw diabetes rows)."""
        if self.full_precision and not spec.is_text and values.dtype.kind == "f":
            return values.dtype
        return _numpy_dtype(spec)

    def column_types(self) -> dict[str, Any]:
        """Column -> the pyarrow type its input needs (text, integer, float or bool), for CSV/JSON parsing."""
        import numpy as np
        import pyarrow as pa

        types = {}
        for spec in self.signature.inputs:
            kind = "U" if spec.is_text else np.dtype(spec.dtype).kind
            arrow = {"U": pa.string(), "i": pa.int64(), "u": pa.int64(), "b": pa.bool_()}.get(kind, pa.float64())
            if spec.name in self.tensors:
                for _ in spec.shape[1:]:
                    arrow = pa.list_(arrow)
            types.update({column: arrow for column in self.columns[spec.name]})
        return types

    def feeds(self, batch: Any) -> dict[str, Any]:
        import numpy as np

        if isinstance(batch, dict):  # arrays by name from .npz
            return {s.name: batch[self.columns[s.name][0]].astype(_numpy_dtype(s), copy=False) for s in self.signature.inputs}
        if not hasattr(batch, "schema"):  # a numpy batch from .npy
            spec = self.signature.inputs[0]
            return {spec.name: batch.astype(self._dtype(spec, batch), copy=False)}
        feeds = {}
        index = {name: i for i, name in enumerate(batch.schema.names)}  # by position: a lookup by name per column costs
        for spec in self.signature.inputs:
            if spec.name in self.tensors:
                feeds[spec.name] = _tensor_rows(batch.column(index[spec.name]), spec)
                continue
            arrays = [_to_numpy(batch.column(index[name])) for name in self.columns[spec.name]]
            matrix = np.column_stack(arrays) if len(arrays) > 1 or self.signature.columnar else arrays[0].reshape(-1, 1)
            feeds[spec.name] = matrix.astype(self._dtype(spec, matrix), copy=False)
        return feeds


def _tensor_rows(column: Any, spec: TensorSpec) -> Any:
    """A list column (one tensor per row, nested lists for higher ranks) as one (rows, *shape) array."""
    import numpy as np

    rows, shape, values = len(column), [], column
    for _ in spec.shape[1:]:
        widths = (
            values.value_lengths().to_numpy(zero_copy_only=False) if hasattr(values, "value_lengths") else np.array([values.type.list_size])
        )
        if len(widths) and (widths != widths[0]).any():
            raise UsageError(
                f"the rows of column {spec.name} hold lists of different lengths ({widths.min()} to {widths.max()})",
                "pad them to one length per batch (or use --batch-size 1)",
            )
        shape.append(int(widths[0]) if len(widths) else 0)
        values = values.flatten()
    return _to_numpy(values).astype(_numpy_dtype(spec), copy=False).reshape(rows, *shape)


def _to_numpy(column: Any) -> Any:
    """Zero-copy where possible (null-free numbers: ~4x cheaper per batch), a converting copy otherwise."""
    try:
        return column.to_numpy()
    except Exception:  # pyarrow.ArrowInvalid: strings, nulls, booleans need the copy
        return column.to_numpy(zero_copy_only=False)


def plan_feeds(signature: Signature, source: DataSource, *, notes: bool = True, full_precision: bool = False) -> FeedPlan:
    """See ``_plan_feeds``; ``full_precision``: the model is the source itself, fed floats as read (``FeedPlan``)."""
    from dataclasses import replace

    return replace(_plan_feeds(signature, source, notes=notes), full_precision=full_precision)


def _plan_feeds(signature: Signature, source: DataSource, *, notes: bool = True) -> FeedPlan:
    """Match the input's columns to the signature by name; raise before any work when they do not fit.

    A matrix input whose feature names are known reads those columns in the model's order (missing ones refused,
    extra ones ignored with a note); without names, the columns are taken in file order, and a note says so.
    ``notes=False`` keeps the per-partition calls of a cluster job quiet (the driver has said it once)."""
    from packager.columns import by_position_note, match_names

    if source.kind == "npy":
        return _plan_array(signature, source)
    if source.kind == "npz":
        return _plan_arrays(signature, source)
    columns = list(source.columns)
    tensors = frozenset(s.name for s in signature.inputs if s.name in source.tensor_columns and len(s.shape) > 1)
    if signature.columnar or len(signature.inputs) > 1:
        missing = [s.name for s in signature.inputs if s.name not in columns]
        if missing:
            hint = "one column per input, holding a list per row for tensor inputs (Parquet or JSON lines; CSV cannot hold lists)"
            raise UsageError(
                f"{source.path.name} lacks the columns {missing} the model needs",
                f"it has {columns[:20]}; give {hint}, named as the model's inputs {signature.input_names}",
            )
        flat = [s.name for s in signature.inputs if s.name not in tensors and tuple(s.shape[1:]) not in ((), (1,))]
        if flat and not signature.columnar:
            raise UsageError(
                f"the columns {flat} of {source.path.name} hold one value per row, the model's inputs take tensors "
                f"{[tuple(s.shape[1:]) for s in signature.inputs if s.name in flat]}",
                "store each input as a list column (Parquet or JSON lines), one tensor per row",
            )
        match_names(signature.input_names, columns, source.path.name, notes=notes, ignored=_IGNORED)  # extras: a note
        return FeedPlan(signature, {s.name: (s.name,) for s in signature.inputs}, tensors)
    spec = signature.inputs[0]
    if spec.name in tensors:
        return FeedPlan(signature, {spec.name: (spec.name,)}, tensors)
    width = _width(spec)
    if spec.names and width == len(spec.names):
        return FeedPlan(signature, {spec.name: match_names(spec.names, columns, source.path.name, notes=notes, ignored=_IGNORED)})
    if spec.name in columns and width == 1:
        return FeedPlan(signature, {spec.name: (spec.name,)})
    features = [c for c in columns if c not in _IGNORED]
    if width is not None and len(features) != width:
        raise UsageError(
            f"{source.path.name} has {len(features)} columns, the model's input {spec.name} takes {width} features",
            f"give exactly {width} feature columns (found {features[:10]}{'…' if len(features) > 10 else ''})",
        )
    if notes and width is not None and width > 1:
        by_position_note(source.path.name, len(features))
    return FeedPlan(signature, {spec.name: tuple(features)})


_IGNORED = frozenset({"__index_level_0__"})


def _plan_array(signature: Signature, source: DataSource) -> FeedPlan:
    if len(signature.inputs) != 1:
        raise UsageError(
            f"a .npy file holds one array, the model has inputs {signature.input_names}",
            "give a Parquet/CSV file with one column per input",
        )
    spec = signature.inputs[0]
    want, got = spec.shape[1:], source.shape[1:]
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
        raise UsageError(
            f"{source.path.name} holds rows of shape {got}, the model's input {spec.name} takes {tuple(want)}",
            "reshape the array to (rows, *input shape)",
        )
    return FeedPlan(signature, {spec.name: ()})


def _plan_arrays(signature: Signature, source: DataSource) -> FeedPlan:
    """.npz arrays fed by input name (the one array of a one-input model by any name), each shape checked."""
    import numpy as np

    names = list(source.columns)
    if len(signature.inputs) == 1 and len(names) == 1:
        chosen = {signature.inputs[0].name: names[0]}
    else:
        missing = [s.name for s in signature.inputs if s.name not in names]
        if missing:
            raise UsageError(
                f"{source.path.name} lacks the arrays {missing} the model needs (it has {names})",
                "save one array per input, named as the model's inputs: np.savez(path, "
                + ", ".join(n + "=..." for n in signature.input_names)
                + ")",
            )
        chosen = {s.name: s.name for s in signature.inputs}
    with np.load(source.path, allow_pickle=False) as archive:
        for spec in signature.inputs:
            got, want = archive[chosen[spec.name]].shape[1:], spec.shape[1:]
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
                raise UsageError(
                    f"array {chosen[spec.name]} of {source.path.name} holds rows of shape {got}, "
                    f"the model's input {spec.name} takes {tuple(want)}",
                    "reshape the array to (rows, *input shape)",
                )
    return FeedPlan(signature, {name: (array,) for name, array in chosen.items()})


def _width(spec: TensorSpec) -> int | None:
    return spec.shape[1] if len(spec.shape) == 2 else None


def _numpy_dtype(spec: TensorSpec) -> Any:
    return object if spec.is_text else spec.dtype


# ---------------------------------------------------------------- writing outputs


def output_columns(outputs: dict[str, Any]) -> dict[str, Any]:
    """Model outputs as flat table columns: a (n, k) output becomes name_0 … name_{k-1}."""
    import numpy as np

    columns = {}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim <= 1 or (array.ndim == 2 and array.shape[1] == 1):
            columns[name] = array.reshape(len(array))
        else:
            flat = array.reshape(len(array), -1)
            for j in range(flat.shape[1]):
                columns[f"{name}_{j}"] = flat[:, j]
    return columns


def _arrow_table(pa: Any, columns: dict[str, Any]) -> Any:
    """Columns as an Arrow table; a text column's missing values (None, or NaN from pandas) become nulls. JPMML
    returns no label for a row it cannot score (a NaN input of a LogisticRegression pipeline on iris), and an object
    array mixing str and float NaN stopped predict with ArrowTypeError, reported as an unusable model. A text column with
    no value in this batch is typed string, not null, so the next batch's labels fit the file's schema."""

    def text(values: Any) -> Any:
        array = pa.array(values, from_pandas=True)
        return array.cast(pa.string()) if pa.types.is_null(array.type) else array

    return pa.table({name: text(v) if v.dtype == object else v for name, v in columns.items()})


class OutputWriter:
    """Writes batches of outputs to ``target`` through a temp file renamed at the end (never half-written)."""

    def __init__(self, target: Path, overwrite: bool = False):
        from packager.errors import OutputExists

        self.target = Path(target)
        self.kind = self.target.suffix.lower().lstrip(".")
        if f".{self.kind}" not in OUTPUT_SUFFIXES:
            raise UsageError(f"output {self.target.name} has an unsupported type .{self.kind}", f"use one of {', '.join(OUTPUT_SUFFIXES)}")
        if self.target.exists() and not overwrite:
            raise OutputExists(f"{self.target} already exists", "choose another -o or pass --force")
        self.temp = self.target.with_name(f".{self.target.name}.partial")
        self._writer: Any = None
        self._schema: Any = None
        self.rows = 0

    def write(self, outputs: dict[str, Any]) -> None:
        if self.kind == "npy":
            if len(outputs) != 1:
                raise UsageError(
                    f"a .npy file holds one array, the model produces {list(outputs)}",
                    "write Parquet or CSV (-o out.parquet), or choose one with --output NAME",
                )
            self._writer = self._writer or NpyStreamWriter(self.temp)
            self.rows += self._writer.append(next(iter(outputs.values())))
            return
        import pyarrow as pa

        table = _arrow_table(pa, output_columns(outputs))
        if self._writer is None:
            self._writer = self._open(table.schema)
            self._schema = table.schema
        elif table.schema != self._schema:  # a batch whose labels are all missing has a null column: the file's type holds
            table = table.cast(self._schema)
        self._writer.write_table(table) if self.kind == "parquet" else self._writer.write(table)
        self.rows += table.num_rows

    def _open(self, schema: Any) -> Any:
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetWriter(self.temp, schema)
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(self.temp, schema)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if not self.temp.exists():
            raise UsageError("the input has no rows: nothing was written", "check the input file")
        self.temp.replace(self.target)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
        self.temp.unlink(missing_ok=True)


class NpyStreamWriter:
    """One ``.npy`` written batch by batch in a single pass: a header with room for any row count goes
    first, rows are appended, and the header is rewritten in place with the final count at close."""

    HEADER_BYTES = 256  # a multiple of 64, as numpy aligns it; a shape of any realistic rank fits

    def __init__(self, path: Path):
        self.path = Path(path)
        self.handle = open(self.path, "wb")
        self.dtype: Any = None
        self.row_shape: tuple[int, ...] = ()
        self.rows = 0

    def append(self, value: Any) -> int:
        import numpy as np

        array = np.asarray(value)
        if self.dtype is None:
            if array.dtype.hasobject or array.dtype.kind in "US":
                raise UsageError(
                    "a .npy output cannot hold text labels batch by batch (their width varies)", "write Parquet or CSV (-o out.parquet)"
                )
            self.dtype, self.row_shape = array.dtype, array.shape[1:]
            self.handle.write(self._header(0))
        if array.shape[1:] != self.row_shape:
            raise UsageError(
                f"the model's output changed shape between batches ({self.row_shape} then {array.shape[1:]})",
                "write Parquet (-o out.parquet)",
            )
        self.handle.write(np.ascontiguousarray(array, dtype=self.dtype).tobytes())
        self.rows += len(array)
        return len(array)

    def close(self) -> None:
        if self.dtype is not None:
            self.handle.seek(0)
            self.handle.write(self._header(self.rows))
        self.handle.close()
        if self.dtype is None:
            self.path.unlink(missing_ok=True)

    def _header(self, rows: int) -> bytes:
        import numpy as np

        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, *self.row_shape)}).encode(
            "latin1"
        )
        room = self.HEADER_BYTES - 10 - len(text) - 1  # magic (6) + version (2) + length (2), then the dict, spaces, newline
        if room < 0:
            raise UsageError(f"an output of shape {self.row_shape} per row is too deep for a .npy stream", "write Parquet (-o out.parquet)")
        return b"\x93NUMPY\x01\x00" + (self.HEADER_BYTES - 10).to_bytes(2, "little") + text + b" " * room + b"\n"
