"""`packager validate`."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--source", required=True, type=click.Path(path_type=Path), help="The source model file the artifact was made from.")
@click.option("--sample", type=click.Path(path_type=Path), help="Sample inputs (.npy/.csv/.parquet); synthesized when absent.")
@click.option("--quantized", "quantization", type=click.Choice(["dynamic", "static", "fp16"]), help="Use this quantization mode's tolerance (default: from manifest.json).")
@click.option("--atol", type=float, help="Override the absolute tolerance.")
@click.option("--rtol", type=float, help="Override the relative tolerance.")
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(artifact, source, sample, quantization, atol, rtol, trust, as_json):
    """Run ARTIFACT in its own runtime and compare with SOURCE's outputs."""
    from packager.cli import emit_json
    from packager.errors import ValidationFailed
    from packager.inspection import validate

    report = validate(artifact, source, sample=sample, quantization=quantization, atol=atol, rtol=rtol, trust=trust)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print(report)
    if report.status == "failed":
        raise ValidationFailed("validation failed: " + "; ".join(report.failures()), "see the table above", report=report)


def _print(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from packager.commands._render import console

    table = Table(title=f"validation: {report.status} ({report.runtime} {report.runtime_version}, {report.samples} samples, atol={report.tolerance.atol:g}, rtol={report.tolerance.rtol:g})")
    for column in ("output", "kind", "max abs", "max rel", "labels / top-1 agree", "ok"):
        table.add_column(column)
    for o in report.outputs:
        fmt = lambda v: "—" if v is None else f"{v:.3g}"
        agree = f"{o.agreement:.2%}" if o.agreement is not None else f"top-1 {o.top1:.2%}" if o.top1 is not None else "—"
        table.add_row(o.name, o.kind, fmt(o.max_abs), fmt(o.max_rel), agree, "yes" if o.passed else f"[red]no[/] {o.note}")
    console()(table)
    if report.details.get("reason"):
        console()(escape(report.details["reason"]))
