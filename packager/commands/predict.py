"""`packager predict`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._options import request_fields, request_options
from packager.requests import PredictRequest


@click.command("predict")
@click.argument("model", metavar="REF_OR_PATH")
@click.argument("data", type=click.Path(path_type=Path), metavar="INPUT")
@request_options(PredictRequest)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask", "spark"]),
    default="local",
    show_default=True,
    help="Run here, or partitioned on a Dask cluster or Spark (Parquet input).",
)
@click.option("--scheduler", metavar="ADDRESS", help="With --engine dask: an existing scheduler (default: a LocalCluster).")
@click.option("--workers", default=2, show_default=True, help="With --engine dask and no --scheduler: LocalCluster workers.")
@click.option("--master", metavar="URL", help="With --engine spark: Spark's master (default: local[2]).")
@click.option("--trust", is_flag=True, help="Run the model unconfined (no sandbox) and past the allow-list: only for files you trust.")
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL for registry references.")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store for registry references.")
@click.option(
    "--verify",
    "verify_policy",
    type=click.Choice(["required", "if-signed", "off"]),
    envvar="PACKAGER_VERIFY",
    help="For a registry reference: required (signed by a trusted key), if-signed (default), off. A refusal exits 12.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(model, data, engine, scheduler, workers, master, trust, registry_url, blobs, verify_policy, as_json, **fields):
    """Run REF_OR_PATH (a package, a model file, or a registry reference such as fraud@production)
    over INPUT (.csv, .parquet, .npy, .npz with one array per input, .jsonl), streamed in batches."""
    from packager.commands._render import emit_json
    from packager.errors import UsageError
    from packager.inference import resolve

    request = PredictRequest(model=model, data=str(data), **request_fields(PredictRequest, fields))
    artifact = resolve(model, registry_url=registry_url, blobs=blobs, verify=verify_policy)
    if master and engine != "spark":
        raise UsageError("--master is Spark's master and needs --engine spark", "add --engine spark, or drop --master")
    if engine != "local" and request.text_column:
        raise UsageError("--text-column runs with --engine local only", f"drop --engine {engine}")
    if engine != "local" and request.keep_columns:
        raise UsageError("--keep-columns runs with --engine local only", f"drop --engine {engine}")
    if engine == "dask":
        from packager.distributed import predict_on_dask

        summary = predict_on_dask(
            artifact,
            data,
            Path(request.output),
            batch_size=request.batch_size,
            threads=request.threads,
            outputs=list(request.outputs),
            scheduler=scheduler,
            workers=workers,
            trust=trust,
            overwrite=request.overwrite,
        ).to_dict()
    elif engine == "spark":
        from packager.spark_engine import predict_on_spark

        summary = predict_on_spark(
            artifact,
            data,
            Path(request.output),
            batch_size=request.batch_size,
            threads=request.threads,
            outputs=list(request.outputs),
            master=master,
            trust=trust,
            overwrite=request.overwrite,
        ).to_dict()
    else:
        summary = _run_local(artifact, request, trust, as_json)
    if as_json:
        emit_json(summary)
    else:
        loaded = (
            f"; model loaded in {summary['load_seconds']:.2f} s"
            if "load_seconds" in summary
            else f"; Spark {summary['master']}, {summary['partitions']} partitions"
            if summary.get("engine") == "spark"
            else f"; {summary['workers']} Dask workers"
        )
        click.echo(
            f"{summary['rows']:,} rows -> {summary['output']} in {summary['seconds']:.2f} s"
            f" ({summary['rows_per_second']:,.0f} rows/s{loaded})"
        )


def _run_local(artifact, request: PredictRequest, trust: bool, quiet: bool) -> dict:
    from packager.batches import open_source
    from packager.commands._render import library_prints_to_stderr
    from packager.inference import submit_predict

    total = open_source(request.data).rows
    with _progress_bar(total, quiet) as advance, library_prints_to_stderr():
        result = submit_predict(artifact, request, trust=trust, progress=advance)
    return {
        "rows": result.rows,
        "batches": result.batches,
        "seconds": result.seconds,
        "rows_per_second": result.rows_per_second,
        "load_seconds": result.load_seconds,
        "output": str(result.output),
        "format": artifact.format,
        "threads": request.threads,
    }


def _progress_bar(total, quiet):
    """A rich progress bar on stderr when it is a terminal (rows done / total when known)."""
    import contextlib
    import sys

    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(lambda rows: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        with Progress(
            TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True)
        ) as progress:
            task = progress.add_task("rows", total=total)
            yield lambda rows: progress.update(task, completed=rows)

    return bar()
