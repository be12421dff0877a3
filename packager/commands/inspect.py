"""`packager inspect`."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(file, trust, as_json):
    """Show FILE's format, framework, signature, size (and opset / IR version for ONNX)."""
    from packager.cli import emit_json
    from packager.commands._render import human_size
    from packager.inspection import inspect

    info = inspect(file, trust=trust)
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
