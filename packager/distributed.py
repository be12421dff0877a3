"""``predict --engine dask``: a Parquet/CSV input partitioned over a Dask cluster (a LocalCluster by
default, or an existing scheduler), the artifact loaded once per worker process, the result written
as partitioned Parquet.

Workers must see the artifact and input paths (a LocalCluster does; a remote cluster needs shared
storage or a registry reference each worker can pull).

Containment: a package runs in the workers' own processes only with ``trust`` (``--trust``). Otherwise each
partition goes through the local engine's sandboxed predict (``packager.inference.predict``: one bubblewrap
child per partition, the partition as a Parquet file in, the predictions as one out), so a file that crashes
or runs code in its loader does it inside the sandbox, not in a worker (issue 21: a tree pickle with child
indices of 50,000,000 segfaulted four Dask workers). The driver never loads an untrusted model: it needs
the signature, which a package's manifest gives; a bare file or a package without one is refused.
"Built locally" is not a reason to trust: nothing in a file proves where it was built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packager.errors import MissingDependency, OutputExists, UsageError
from packager.inference import Runnable

_LOADED: dict[tuple[str, str], Any] = {}  # per worker process: (path, format) -> Predictor
LOADS: dict[tuple[str, str], int] = {}  # how many times this process loaded each artifact (for tests and reports)


@dataclass(frozen=True)
class DaskResult:
    rows: int
    partitions: int
    seconds: float
    output: str
    workers: int
    loads_per_worker: dict[str, int]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second, "engine": "dask"}


def refuse_unconfined(artifact: Runnable, trust: bool, engine: str, workers: str) -> None:
    """Without trust a cluster engine sandboxes each partition, and the driver must learn the signature without
    loading the model: only a package's manifest gives it. A bare file (or a package without one) is refused."""
    if not trust and (artifact.manifest is None or artifact.signature is None):
        raise UsageError(
            f"--engine {engine} would load {artifact.label or artifact.path.name} in the driver and {workers} to learn its "
            "inputs, which the sandbox does not confine",
            "package it with `packager convert` first (each partition then runs sandboxed), use --engine local (sandboxed), "
            "or pass --trust for a file you trust",
        )


def predict_on_dask(
    artifact: Runnable,
    data: str | Path,
    output: str | Path,
    *,
    batch_size: int = 1024,
    threads: int | None = None,
    outputs: list[str] | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    trust: bool = False,
    overwrite: bool = False,
) -> DaskResult:
    import shutil
    import time

    from packager.batches import open_source, plan_feeds
    from packager.inference import load_predictor

    refuse_unconfined(artifact, trust, "dask", "Dask workers")
    dd, distributed = _dask()
    source = open_source(data)
    if source.kind not in ("parquet", "csv"):
        raise UsageError(f"--engine dask reads Parquet or CSV, not .{source.kind}", "convert the input to Parquet, or use --engine local")
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExists(f"{output} already exists", "choose another -o or pass --force")
    signature = artifact.signature or load_predictor(artifact, trust=trust).signature
    plan = plan_feeds(signature, source)  # a column mismatch fails here, before the cluster starts
    dtypes = {column: arrow.to_pandas_dtype() for column, arrow in plan.column_types().items()}  # not inferred from the first block
    artifact = Runnable(artifact.path.absolute(), artifact.format, signature, artifact.manifest, artifact.label)
    started = time.perf_counter()
    with _client(distributed, scheduler, workers) as client:
        frame = (
            dd.read_parquet(str(source.path)) if source.kind == "parquet" else dd.read_csv(str(source.path), blocksize="64MB", dtype=dtypes)
        )
        job = dict(artifact=artifact, batch_size=batch_size, threads=threads, outputs=outputs or [], trust=trust)
        meta = client.submit(_predict_frame, frame.head(2, compute=True), pure=False, **job).result().iloc[:0]
        temp = output.with_name(f".{output.name}.partial")
        shutil.rmtree(temp, ignore_errors=True)
        result = frame.map_partitions(_predict_frame, meta=meta, **job)
        result.to_parquet(str(temp), write_index=False)
        loads = client.run(_load_counts, str(artifact.path))
        n_workers = len(client.scheduler_info()["workers"])
    rows = _count_rows(temp)
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    temp.replace(output)
    return DaskResult(rows, frame.npartitions, time.perf_counter() - started, str(output), n_workers, loads)


def _dask():
    try:
        import dask.dataframe as dd
        import distributed
    except ImportError:
        raise MissingDependency("--engine dask needs dask.distributed", "pip install 'packager[dask]'") from None
    return dd, distributed


def _client(distributed: Any, scheduler: str | None, workers: int) -> Any:
    import contextlib
    import logging

    if scheduler:
        return distributed.Client(scheduler, timeout="30s")
    stack = contextlib.ExitStack()
    # silence_logs: a failed partition is our one-line error; the workers' "Compute Failed" tracebacks would bury it
    cluster = stack.enter_context(
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        )
    )
    client = stack.enter_context(distributed.Client(cluster))

    @contextlib.contextmanager
    def session():
        with stack:
            yield client

    return session()


def _predict_frame(frame: Any, *, artifact: Runnable, batch_size: int, threads: int | None, outputs: list[str], trust: bool) -> Any:
    """One partition (a pandas DataFrame) through the worker's cached predictor, batch by batch (trusted), or through
    a sandboxed child (untrusted)."""
    import pandas as pd
    import pyarrow as pa

    if not trust:
        return _predict_confined(frame, artifact, batch_size, threads, outputs)

    from packager.batches import DataSource, output_columns, plan_feeds

    predictor = _predictor(artifact, threads, trust)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    plan = plan_feeds(predictor.signature, DataSource(artifact.path, "parquet", columns=tuple(table.column_names)), notes=False)
    parts = []
    for batch in table.to_batches(max_chunksize=batch_size):
        produced = predictor(plan.feeds(batch))
        parts.append(pd.DataFrame(output_columns({k: v for k, v in produced.items() if not outputs or k in outputs})))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _predict_confined(frame: Any, artifact: Runnable, batch_size: int, threads: int | None, outputs: list[str]) -> Any:
    """The partition as a Parquet file through the local engine's sandboxed ``predict``, read back.
    Measured: one confined child per partition costs the sandbox start plus one model load (about 2 s here)."""
    import tempfile

    import pandas as pd

    from packager.inference import predict

    key = (str(artifact.path), artifact.format)
    LOADS[key] = LOADS.get(key, 0) + 1  # each sandboxed partition loads the model once, in its own child
    with tempfile.TemporaryDirectory(prefix="packager-partition-") as folder:
        rows, predictions = Path(folder) / "rows.parquet", Path(folder) / "predictions.parquet"
        frame.to_parquet(rows, index=False)
        predict(artifact, rows, predictions, batch_size=batch_size, threads=threads, outputs=outputs, overwrite=True, trust=False)
        return pd.read_parquet(predictions)


def _predictor(artifact: Runnable, threads: int | None, trust: bool) -> Any:
    from packager.inference import load_predictor

    key = (str(artifact.path), artifact.format)
    if key not in _LOADED:
        _LOADED[key] = load_predictor(artifact, threads=threads, trust=trust)
        LOADS[key] = LOADS.get(key, 0) + 1
    return _LOADED[key]


def _load_counts(path: str) -> int:
    return sum(count for (p, _), count in LOADS.items() if p == path)


def _count_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(part).metadata.num_rows for part in sorted(folder.glob("*.parquet")))
