"""`packager validate`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--source", required=True, type=click.Path(path_type=Path), help="The source model file the artifact was made from.")
@click.option("--sample", type=click.Path(path_type=Path), help="Sample inputs (.npy/.csv/.parquet); synthesized when absent.")
@click.option(
    "--quantized",
    "quantization",
    type=click.Choice(["dynamic", "static", "fp16"]),
    help="Use this quantization mode's tolerance (default: from manifest.json).",
)
@click.option("--atol", type=float, help="Override the absolute tolerance.")
@click.option("--rtol", type=float, help="Override the relative tolerance.")
@click.option(
    "--tolerance", "tolerance", multiple=True, metavar="NAME=ATOL[,RTOL]", help="Judge this output by an absolute tolerance instead."
)
@click.option("--min-agreement", type=float, help="Fraction of rows whose label / best class must agree.")
@click.option(
    "--output-kind",
    "output_kind",
    multiple=True,
    metavar="NAME=KIND",
    help="labels, probabilities, scores, regression, embedding, integer.",
)
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(artifact, source, sample, quantization, atol, rtol, tolerance, min_agreement, output_kind, trust, as_json):
    """Run ARTIFACT in its own runtime and compare with SOURCE's outputs."""
    from packager.commands._render import emit_json
    from packager.errors import ValidationFailed
    from packager.inspection import validate

    report = validate(
        artifact,
        source,
        sample=sample,
        quantization=quantization,
        atol=atol,
        rtol=rtol,
        tolerance=tolerance,
        min_agreement=min_agreement,
        output_kind=output_kind,
        trust=trust,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _print(report)
    if report.status == "failed":
        raise ValidationFailed("validation failed: " + "; ".join(report.failures()), "see the table above", report=report)


def _print(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from packager.commands._render import agreement_text, console

    title = f"validation: {report.status} ({report.runtime} {report.runtime_version}, {report.samples} rows, data: {report.data_source})"
    table = Table(title=title)
    for column in ("output", "kind", "criterion", "max abs", "agreement", "ok"):
        table.add_column(column, overflow="fold")

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3g}"

    for o in report.outputs:
        ok = (
            "yes"
            if o.passed
            else f"[red]no[/] {escape(o.note)}" + (f" rows {[r['row'] for r in o.failing_rows]}" if o.failing_rows else "")
        )
        kind = f"{o.kind} ({o.kind_rule})" if getattr(o, "kind_rule", "") else o.kind  # which rule decided the kind
        table.add_row(o.name, escape(kind), escape(o.criterion), fmt(o.max_abs), agreement_text(o), ok)
    console()(table)
    if report.parent:
        console()(escape(f"fp32 parent: {report.parent.get('status')}" + "".join(f"; {f}" for f in report.parent.get("failures", ()))))
    if report.note:
        console()(escape(report.note))
    if report.details.get("reason"):
        console()(escape(report.details["reason"]))
