"""`packager optimize`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click


@click.command("optimize")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Rows (.parquet, .csv, .jsonl): split into calibration and held-out rows.",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Folder for optimize.json/.md/.png and best/.")
@click.option("--objective", type=click.Choice(["latency", "throughput", "size"]), default="latency", show_default=True)
@click.option("--batch-size", type=int, help="Rows per call (default: 1 for latency, 16384 for throughput).")
@click.option("--threads", default=1, show_default=True, help="Threads for every runtime (fixed and recorded).")
@click.option(
    "--budget",
    "budget",
    multiple=True,
    metavar="METRIC<=|>=VALUE",
    help="agreement, top1, cosine, r2 (>=); max_abs_diff, max_rel_diff (<=). Repeatable.",
)
@click.option("--formats", help="Comma-separated targets to search (default: every target the plugins reach and can run here).")
@click.option(
    "--time-budget",
    help="Finish within about this long (15m, 90s, 1h): stop trying candidates in time for the final run; choose the best so far.",
)
@click.option("--text-column", help="Text models: the data's column of texts.")
@click.option(
    "--push", "push_name", metavar="NAME", help="Push best/ as a version of NAME, derived from the source version, with the report."
)
@click.option("--alias", "aliases", multiple=True, help="With --push: point this alias at the pushed version (repeatable).")
@click.option("--trust", is_flag=True, help="Load the source without the sandbox (only for models you made).")
@click.option("--force", "--overwrite", "overwrite", is_flag=True, help="Replace OUT if it exists (as convert's --force).")
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL for --push.")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store for --push.")
@click.option("--json", "as_json", is_flag=True, help="Print optimize.json.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (the table or --json still printed).")
def command(
    source,
    data,
    out,
    objective,
    batch_size,
    threads,
    budget,
    formats,
    time_budget,
    text_column,
    push_name,
    aliases,
    trust,
    overwrite,
    registry_url,
    blobs,
    as_json,
    quiet,
):
    """Search every format, quantization and runtime packager can make from SOURCE for the fastest artifact within the
    accuracy budget, judged on held-out rows of --data; write the report and OUT/best/ (an ordinary package)."""
    from packager.commands._render import emit_json, library_prints_to_stderr
    from packager.errors import UsageError, ValidationFailed
    from packager.optimize import OptimizeResult, optimize, parse_duration
    from packager.optimize_budget import parse_budget
    from packager.optimize_report import markdown

    parse_budget(budget)  # a bad bound fails before any work
    parse_duration(time_budget)
    if aliases and not push_name:
        raise UsageError("--alias needs --push NAME", "e.g. --push fraud --alias staging")
    failed: ValidationFailed | None = None
    with _console(quiet or as_json) as (say, steps), library_prints_to_stderr():
        try:
            result = optimize(
                source,
                data,
                out,
                objective=objective,
                batch_size=batch_size,
                threads=threads,
                budget=budget,
                formats=formats.split(",") if formats is not None else None,
                time_budget=time_budget,
                text_column=text_column,
                push=push_name,
                aliases=aliases,
                trust=trust,
                overwrite=overwrite,
                registry_url=registry_url,
                blobs=blobs,
                progress=say,
                steps=steps,
            )
        except ValidationFailed as exc:  # nothing chosen: the table is still printed, then exit 9
            if not isinstance(exc.report, OptimizeResult):
                raise
            result, failed = exc.report, exc
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(markdown(result))
        click.echo(f"written: {result.out / 'optimize.json'}, optimize.md, optimize.png" + (f", {result.best}/" if result.chosen else ""))
        if result.pushed:
            click.echo(f"pushed: {result.pushed}")
    if failed is not None:
        raise failed


@contextlib.contextmanager
def _console(quiet: bool) -> Iterator[tuple[Callable[[str], None] | None, Callable[[str, int, str], None] | None]]:
    """On a terminal: one rich progress bar per candidate (built, judged, measured) with the messages printed above
    the bars. Not a terminal (a log, a pipe, CI): one plain line per step on stderr, nothing redrawn, so stdout (the
    table, or --json) and stderr stay readable by a program. ``quiet``/--json: nothing on stderr."""
    if quiet:
        yield None, None
        return
    if not sys.stderr.isatty():
        yield (lambda message: click.echo(message, err=True)), None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from packager.optimize import STEPS

    with Progress(
        TextColumn("{task.fields[name]}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bars:
        tasks: dict[str, Any] = {}

        def steps(candidate: str, done: int, what: str) -> None:
            if candidate not in tasks:
                tasks[candidate] = bars.add_task(candidate, total=STEPS, name=escape(candidate), what="")
            bars.update(tasks[candidate], completed=done, what=escape(what))

        yield (lambda message: bars.console.print(escape(message), highlight=False)), steps
