"""`packager bench`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("bench")
@click.argument("models", nargs=-1, required=True, metavar="REF_OR_PATH...")
@click.option(
    "--data", type=click.Path(path_type=Path), required=True, help="Input rows (.parquet, .csv, .npy, .npz: one array per input, .jsonl)."
)
@click.option("--batch-sizes", default="1,32,1024,16384", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", default=1, show_default=True, help="Threads for every runtime (fixed and recorded).")
@click.option("--baseline", type=click.Path(path_type=Path), help="The source model, run in its native framework as the baseline.")
@click.option("--model-class", metavar="MODULE:CLASS", help="For a PyTorch state-dict baseline: its nn.Module class.")
@click.option(
    "--text-column",
    help="Benchmark on the texts of this column, tokenized per batch (packages that carry a tokenizer, "
    "Hugging Face folders as --baseline).",
)
@click.option("--min-seconds", default=0.5, show_default=True, help="Measure each batch size at least this long.")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for bench.json, bench.md, bench.png.",
)
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL for registry references.")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store for registry references.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(models, data, batch_sizes, threads, baseline, model_class, text_column, min_seconds, out, registry_url, blobs, as_json):
    """Latency p50/p95/p99, throughput, load time, peak memory and size of each artifact at each batch size."""
    from packager.bench import BenchSettings, markdown, run_bench, write_reports
    from packager.commands._render import emit_json
    from packager.errors import UsageError

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(",") if b.strip())
    except ValueError:
        raise UsageError(f"--batch-sizes {batch_sizes!r} is not a list of numbers", "e.g. --batch-sizes 1,32,1024") from None
    settings = BenchSettings(batch_sizes=sizes, threads=threads, min_seconds=min_seconds, text_column=text_column)
    report = run_bench(
        list(models),
        data,
        settings,
        baseline=str(baseline) if baseline else None,
        model_class=model_class,
        registry_url=registry_url,
        blobs=blobs,
    )
    paths = write_reports(report, out)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(markdown(report))
        click.echo(f"written: {', '.join(str(p) for p in paths.values())}")
