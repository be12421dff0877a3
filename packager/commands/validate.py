"""`packager validate`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._options import request_fields, request_options
from packager.requests import ValidateRequest


@click.command("validate")
@click.argument("artifact", type=click.Path(path_type=Path))
@request_options(ValidateRequest)
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(artifact, trust, as_json, **fields):
    """Run ARTIFACT in its own runtime and compare with SOURCE's outputs."""
    from packager.commands._render import emit_json, library_prints_to_stderr
    from packager.errors import ValidationFailed
    from packager.inspection import submit_validate

    with library_prints_to_stderr():
        report = submit_validate(ValidateRequest(artifact=str(artifact), **request_fields(ValidateRequest, fields)), trust=trust)
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
