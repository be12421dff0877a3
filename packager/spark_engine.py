"""``predict --engine spark``: a Parquet input (a file or a folder of parts) read by Spark, each partition run through the
artifact with ``mapInPandas`` in Spark's Python workers (one runtime session per worker process, reused across its
tasks), columns matched by name, the result written as partitioned Parquet in the input's row order.

It mirrors ``--engine dask`` (``packager.distributed``): same policy (Spark's workers are not sandboxed, so an unpackaged
file needs --trust; a package is loaded with the static checks on), same per-partition code path
(``distributed._predict_frame``), same output columns. Row order: Spark packs input files into partitions largest first,
so partition order is not input order; each row carries its file and Parquet row index (``_metadata``) through the
workers and the outputs are sorted on them before writing (one shuffle of the output columns only).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, OutputExists, UsageError
from packager.inference import Artifact

FILE, ROW = "__packager_file", "__packager_row"  # the input position each output row carries through the workers


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


def predict_on_spark(artifact: Artifact, data: str | Path, output: str | Path, *, batch_size: int = 1024, threads: int | None = None,
                     outputs: list[str] | None = None, master: str | None = None, trust: bool = False,
                     overwrite: bool = False) -> SparkResult:
    import shutil
    import time

    from packager.batches import plan_feeds
    from packager.distributed import _count_rows, _predict_frame
    from packager.inference import load_predictor

    if not trust and artifact.manifest is None:
        name = artifact.label or artifact.path.name
        raise UsageError(f"--engine spark loads {name} in Spark's Python workers, which the sandbox does not confine",
                         "package it with `packager convert` first (workers still run the static checks), "
                         "use --engine local (sandboxed), or pass --trust for a file you trust")
    source = _parquet_source(Path(data))
    output = Path(output).absolute()
    if output.exists() and not overwrite:
        raise OutputExists(f"{output} already exists", "choose another -o or pass --force")
    signature = artifact.signature or load_predictor(artifact, trust=trust).signature
    plan = plan_feeds(signature, source)  # a column mismatch fails here, before Spark starts
    columns = list(dict.fromkeys(c for names in plan.columns.values() for c in names))
    artifact = Artifact(artifact.path.absolute(), artifact.format, signature, artifact.manifest, artifact.label)
    job = {"artifact": artifact, "batch_size": batch_size, "threads": threads, "outputs": outputs or [], "trust": trust}

    from packager.spark_session import session

    started = time.perf_counter()
    spark = session(master)
    from pyspark.sql import functions as F

    frame = spark.read.parquet(source.path.absolute().as_uri())
    frame = frame.select(*[F.col(f"`{c}`") for c in columns], F.col("_metadata.file_path").alias(FILE),
                         F.col("_metadata.row_index").alias(ROW))
    schema = _output_schema(_predict_frame(frame.limit(2).toPandas()[columns], **job))
    loads = spark.sparkContext.accumulator(0)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(batch_size, 1)))

    def predict_partition(frames: Iterator[Any]) -> Iterator[Any]:
        from packager import distributed

        before = sum(distributed.LOADS.values())
        for part in frames:
            result = _predict_frame(part[columns], **job)
            result[FILE], result[ROW] = part[FILE].to_numpy(), part[ROW].to_numpy()
            yield result
        loads.add(sum(distributed.LOADS.values()) - before)

    temp = output.with_name(f".{output.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    scored = frame.mapInPandas(predict_partition, schema=f"{schema}, {FILE} string, {ROW} long")
    partitions = frame.rdd.getNumPartitions()
    try:
        scored.orderBy(FILE, ROW).drop(FILE, ROW).write.parquet(temp.as_uri())
    except Exception as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise InputFileError(f"Spark failed predicting with {artifact.label or artifact.path.name}: {_python_reason(exc)}",
                             "rerun with --engine local to see the row that fails") from exc
    rows = _count_rows(temp)
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    temp.replace(output)
    return SparkResult(rows, partitions, time.perf_counter() - started, str(output), spark.sparkContext.master, int(loads.value))


def _parquet_source(data: Path) -> Any:
    """The input's columns for matching (a folder: its first part file's, as Spark's schema inference does by default)."""
    from packager.batches import open_source

    if data.is_dir():
        parts = sorted(p for p in data.rglob("*.parquet") if not p.name.startswith(("_", ".")))
        if not parts:
            raise InputFileError(f"{data} holds no .parquet files", "give a Parquet file or a folder of Parquet parts")
        source = open_source(parts[0])
        return source.__class__(data, source.kind, source.columns, source.shape, None, source.tensor_columns)
    source = open_source(data)
    if source.kind != "parquet":
        raise UsageError(f"--engine spark reads Parquet, not .{source.kind}", "convert the input to Parquet, or use --engine local or dask")
    return source


def _output_schema(meta: Any) -> str:
    """The outputs' Spark DDL from a two-row prediction (types as the runtime gives them: float32 stays float)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.Schema.from_pandas(meta, preserve_index=False)).simpleString()[len("struct<"):-1]


def _python_reason(exc: Exception) -> str:
    """A worker's failure arrives as a JVM exception wrapping the Python traceback; its last line is the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.strip().startswith("at ")]
    python = [line for line in lines if line.startswith(("packager.errors.", "ValueError", "TypeError", "KeyError", "RuntimeError"))]
    return ((python or lines or [type(exc).__name__])[-1 if python else 0])[:300]
