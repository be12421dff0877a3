"""`packager inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._options import request_fields, request_options
from packager.requests import InspectRequest


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@request_options(InspectRequest)
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(file, trust, as_json, **fields):
    """Show FILE's format, framework, signature, size (and opset / IR version for ONNX).

    The signature options are those of `convert`; without them, what needs them is named in a note."""
    from packager.commands._render import emit_json, human_size, library_prints_to_stderr
    from packager.inspection import submit_inspect

    with library_prints_to_stderr():
        info = submit_inspect(InspectRequest(path=str(file), **request_fields(InspectRequest, fields)), trust=trust)
    if as_json:
        emit_json(info)
        return
    from rich.markup import escape
    from rich.table import Table

    from packager.commands._render import console

    table = Table(show_header=False, title=str(file))
    for key, value in info.items():
        table.add_row(key, human_size(value) if key == "size" else escape(_show(value)))
    console()(table)


def _show(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
