"""`packager bench`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._options import request_fields, request_options
from packager.requests import BenchRequest, BenchSettings


@click.command("bench")
@click.argument("models", nargs=-1, required=True, metavar="REF_OR_PATH...")
@request_options(BenchRequest)
@request_options(BenchSettings)
@click.option("--baseline", type=click.Path(path_type=Path), help="The source model, run in its native framework as the baseline.")
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
def command(models, baseline, out, registry_url, blobs, as_json, **fields):
    """Latency p50/p95/p99, throughput, load time, peak memory and size of each artifact at each batch size."""
    from packager.bench import markdown, run_bench, write_reports
    from packager.commands._render import emit_json, library_prints_to_stderr

    with library_prints_to_stderr():
        report = run_bench(
            list(models),
            fields["data"],
            BenchSettings(**request_fields(BenchSettings, fields)),
            baseline=str(baseline) if baseline else None,
            model_class=fields["model_class"],
            registry_url=registry_url,
            blobs=blobs,
        )
    paths = write_reports(report, out)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(markdown(report))
        click.echo(f"written: {', '.join(str(p) for p in paths.values())}")
