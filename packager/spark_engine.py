"""``predict --engine spark``: a Parquet or CSV input (a file or a folder of parts) read by Spark, each partition run through
the artifact with ``mapInPandas`` in Spark's Python workers (one runtime session per worker process, reused across its
tasks), columns matched by name, the result written as partitioned Parquet in the input's row order.

It mirrors ``--engine dask`` (``packager.distributed``): same policy (without --trust each partition runs in a sandboxed
child and an unpackaged file is refused, since the driver would have to load it for its inputs), same per-partition code path
(``distributed._predict_frame``), same output columns. Row order: Spark packs input files into partitions largest first,
so partition order is not input order; each row carries its file, its split's offset and its row index (Parquet's
``_metadata.row_index``; for CSV, which has none, the monotonically increasing id, ordered within a split) through the
workers and the outputs are sorted on them before writing (one shuffle of the output columns only).

CSV is parsed as the local engine parses it (pyarrow, ``batches.iter_batches``), so that both engines give equal outputs:
every field is read as text by Spark, pyarrow's null spellings become null, the model's columns are cast to the type its
signature needs (``FeedPlan.column_types``: Spark's ANSI cast accepted the same numbers as pyarrow on 12 of 13 spellings
tried, "1.5d" being the one pyarrow refuses) and text columns keep "" where Spark would give null; a malformed value or
row fails the job (FAILFAST) as it fails pyarrow, never a silent null.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, OutputExists, PackagerError, UsageError
from packager.inference import Runnable

FILE, BLOCK, ROW = "__packager_file", "__packager_block", "__packager_row"  # the input position each row carries through the workers
# pyarrow.csv.ConvertOptions().null_values (pyarrow 2x): what the local engine reads as null in a number column
CSV_NULLS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "n/a",
    "nan",
    "null",
)


JVM_RUNTIME_FORMATS = frozenset({"pmml"})  # jpmml_evaluator starts a JVM through JPype in the process that scores


@dataclass(frozen=True)
class SparkResult:
    rows: int
    partitions: int
    seconds: float
    output: str
    master: str
    loads: int  # runtime sessions created in Spark's Python workers (at most one per worker process)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second, "engine": "spark"}


def predict_on_spark(
    artifact: Runnable,
    data: str | Path,
    output: str | Path,
    *,
    batch_size: int = 1024,
    threads: int | None = None,
    outputs: list[str] | None = None,
    master: str | None = None,
    trust: bool = False,
    overwrite: bool = False,
) -> SparkResult:
    import shutil
    import time

    from packager.batches import plan_feeds
    from packager.distributed import _count_rows, _predict_frame, refuse_unconfined
    from packager.inference import load_predictor

    refuse_unconfined(artifact, trust, "spark", "Spark's Python workers")
    if artifact.format in JVM_RUNTIME_FORMATS:
        raise UsageError(
            f"--engine spark cannot run a {artifact.format} package: its runtime starts its own JVM, which Spark's Python "
            "workers do not get (measured: every task failed with \"No module named 'org.jpmml'\")",
            "use --engine local for this package, or convert the model to ONNX for Spark",
        )
    source, files = _table_source(Path(data))
    output = Path(output).absolute()
    if output.exists() and not overwrite:
        raise OutputExists(f"{output} already exists", "choose another -o or pass --force")
    signature = artifact.signature or load_predictor(artifact, trust=trust).signature
    plan = plan_feeds(signature, source)  # a column mismatch fails here, before Spark starts
    columns = list(dict.fromkeys(c for names in plan.columns.values() for c in names))
    artifact = Runnable(artifact.path.absolute(), artifact.format, signature, artifact.manifest, artifact.label)
    job: dict[str, Any] = {"artifact": artifact, "batch_size": batch_size, "threads": threads, "outputs": outputs or [], "trust": trust}

    from packager.spark_session import session

    started = time.perf_counter()
    spark = session(master)
    temp = output.with_name(f".{output.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    with _quiet(spark):  # the reason is in our error: Spark's task failure logs and traces would bury it
        frame = _read(spark, source, files, plan.column_types(), columns)
        try:
            with warnings.catch_warnings():  # pyspark warns on pandas 3, and repeats a failed read's Java trace as a warning
                warnings.simplefilter("ignore")
                head = frame.limit(2).toPandas()
            schema = _output_schema(_predict_frame(head[columns], **job))
        except Exception as exc:
            raise _failure(exc, source, artifact) from exc
        loads = spark.sparkContext.accumulator(0)
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(batch_size, 1)))

        def predict_partition(frames: Iterator[Any]) -> Iterator[Any]:
            from packager import distributed

            before = sum(distributed.LOADS.values())
            if not trust:  # one sandboxed child per partition, not per Arrow batch (each child loads the model)
                import pandas as pd

                parts = list(frames)
                frames = iter([pd.concat(parts, ignore_index=True)] if parts else [])
            for part in frames:
                result = _predict_frame(part[columns], **job)
                for key in (FILE, BLOCK, ROW):
                    result[key] = part[key].to_numpy()
                yield result
            loads.add(sum(distributed.LOADS.values()) - before)

        scored = frame.mapInPandas(predict_partition, schema=f"{schema}, {FILE} string, {BLOCK} long, {ROW} long")
        partitions = frame.rdd.getNumPartitions()
        try:
            scored.orderBy(FILE, BLOCK, ROW).drop(FILE, BLOCK, ROW).write.parquet(temp.as_uri())
        except Exception as exc:
            shutil.rmtree(temp, ignore_errors=True)
            raise _failure(exc, source, artifact) from exc
    rows = _count_rows(temp)
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    temp.replace(output)
    return SparkResult(rows, partitions, time.perf_counter() - started, str(output), spark.sparkContext.master, int(loads.value))


def _table_source(data: Path) -> tuple[Any, list[Path]]:
    """The input's columns for matching, and its files (a folder: its .parquet or .csv parts, columns from the first part,
    as Spark's schema inference does by default)."""
    from packager.batches import open_source

    files = [data]
    if data.is_dir():
        found = {kind: sorted(p for p in data.rglob(f"*.{kind}") if not p.name.startswith(("_", "."))) for kind in ("parquet", "csv")}
        kinds = [kind for kind, parts in found.items() if parts]
        if len(kinds) != 1:
            what = "holds no .parquet or .csv files" if not kinds else "mixes .parquet and .csv files"
            raise InputFileError(f"{data} {what}", "give a Parquet or CSV file, or a folder of Parquet or of CSV parts")
        files = found[kinds[0]]
        first = open_source(files[0])
        return first.__class__(data, first.kind, first.columns, first.shape, None, first.tensor_columns), files
    source = open_source(data)
    if source.kind not in ("parquet", "csv"):
        raise UsageError(
            f"--engine spark reads Parquet or CSV, not .{source.kind}", "convert the input to Parquet, or use --engine local or dask"
        )
    return source, files


def _read(spark: Any, source: Any, files: list[Path], types: dict[str, Any], columns: list[str]) -> Any:
    """The model's columns (typed as the local engine reads them) and each row's position: file, split offset, row."""
    from pyspark.sql import functions as F

    position = [F.col("_metadata.file_path").alias(FILE), F.col("_metadata.file_block_start").alias(BLOCK)]
    if source.kind == "parquet":
        frame = spark.read.parquet(source.path.absolute().as_uri())
        return frame.select(*[F.col(f"`{c}`") for c in columns], *position, F.col("_metadata.row_index").alias(ROW))
    header = ", ".join(f"`{c.replace('`', '``')}` string" for c in source.columns)
    # enforceSchema=False: each part's header must name the first part's columns in its order (true would map by position)
    frame = spark.read.options(header=True, mode="FAILFAST", enforceSchema=False).schema(header).csv([f.absolute().as_uri() for f in files])
    return frame.select(*[_typed(F, c, types[c]) for c in columns], *position, F.monotonically_increasing_id().alias(ROW))


def _typed(F: Any, column: str, arrow: Any) -> Any:
    """A CSV column as pyarrow reads it: text never null ("" stays ""), numbers and booleans cast (ANSI: a bad value fails)."""
    import pyarrow as pa

    value = F.col(f"`{column}`")
    if pa.types.is_string(arrow):
        return F.coalesce(value, F.lit("")).alias(column)
    spark_type = "bigint" if pa.types.is_integer(arrow) else "boolean" if pa.types.is_boolean(arrow) else "double"
    return F.when(value.isin(*CSV_NULLS), F.lit(None)).otherwise(value).cast(spark_type).alias(column)


@contextlib.contextmanager
def _quiet(spark: Any) -> Iterator[None]:
    """Spark's own logs off while the job runs: a failing task logs its Java trace at ERROR, and PySpark 4 logs each failed
    query as a JSON record on stderr; the CLI prints our one line instead."""
    import logging

    from pyspark.logger import PySparkLogger

    loggers = [PySparkLogger.getLogger(name) for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    spark.sparkContext.setLogLevel("OFF")
    try:
        yield
    finally:
        spark.sparkContext.setLogLevel("ERROR")  # spark_session's level
        for logger, level in zip(loggers, levels, strict=True):  # one level read per logger above
            logger.setLevel(level)


def _failure(exc: Exception, source: Any, artifact: Runnable) -> PackagerError:
    """A Spark job's failure as our error: the input's fault (a value or a header Spark could not read) or the model's.
    A worker's own packager error keeps its type (an unsafe model is exit 5 with its hint, not a row to look for)."""
    import re

    from packager import errors

    if isinstance(exc, PackagerError):  # raised here, by the sandboxed scoring of a partition: already ours
        return exc
    text = str(exc)
    for line in reversed(text.splitlines()):  # the worker's traceback ends with our error's "[packager.errors.]Type: what"
        ours = re.match(r"\s*(?:packager\.errors\.)?([A-Z]\w+): (.+)", line)
        kind = getattr(errors, ours.group(1), None) if ours else None
        if ours and isinstance(kind, type) and issubclass(kind, PackagerError):
            return kind(ours.group(2).strip())
    cast = re.search(r"The value (.{0,80}?) of the type \"?STRING\"? cannot be cast to \"?(\w+)", text)
    if cast:
        value, wanted = cast.group(1), cast.group(2).lower()
        return InputFileError(
            f"cannot read {source.path.name} as {source.kind}: the value {value} is not a {wanted}",
            "fix the value (empty fields and NA read as missing), or convert the file to Parquet with explicit types",
        )
    if "CSV header does not conform to the schema" in text:
        names = re.search(r"Header: (.{0,200}?)\s*Schema: (.{0,200}?)\s*Expected", text, re.DOTALL)
        found = f" (header {names.group(1).strip()}, first part {names.group(2).strip()})" if names else ""
        return InputFileError(
            f"the CSV parts of {source.path.name} do not share one header{found}", "give every part the same columns in the same order"
        )
    if "MALFORMED_RECORD_IN_PARSING" in text or "Malformed records are detected" in text:
        record = re.search(r"Malformed records are detected in record parsing: \[?(.{0,120}?)\]?\.", text)
        row = f" ({record.group(1)})" if record else ""
        return InputFileError(
            f"cannot read {source.path.name} as {source.kind}: a malformed row{row}",
            "check that every row has the header's number of fields, or convert the file to Parquet",
        )
    return InputFileError(
        f"Spark failed predicting with {artifact.label or artifact.path.name}: {_python_reason(exc)}",
        "rerun with --engine local to see the row that fails",
    )


def _output_schema(meta: Any) -> str:
    """The outputs' Spark DDL from a two-row prediction (types as the runtime gives them: float32 stays float)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.Schema.from_pandas(meta, preserve_index=False)).simpleString()[len("struct<") : -1]


def _python_reason(exc: Exception) -> str:
    """A worker's failure arrives as a JVM exception wrapping the Python traceback; its last line is the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.strip().startswith("at ")]
    python = [line for line in lines if line.startswith(("packager.errors.", "ValueError", "TypeError", "KeyError", "RuntimeError"))]
    return ((python or lines or [type(exc).__name__])[-1 if python else 0])[:300]
