"""`packager formats`."""

from __future__ import annotations

import click


@click.command("formats")
@click.option("--json", "as_json", is_flag=True)
@click.option("--markdown", is_flag=True, help="Print the Markdown table used in the README.")
def command(as_json, markdown):
    """The support matrix, generated from the registered converters and runtimes."""
    from dataclasses import asdict

    from packager.commands._render import emit_json
    from packager.matrix import matrix_markdown, support_matrix

    rows = support_matrix()
    if as_json:
        emit_json([asdict(r) for r in rows])
    elif markdown:
        click.echo(matrix_markdown(rows))
    else:
        for r in rows:
            runtime = r.validated_by if r.executes else f"{r.validated_by} (not executed here)"
            via = f"via {' -> '.join(r.via)}" if r.via else ""
            click.echo(
                f"{r.source:<10} -> {r.target:<11} {via:<9} {r.extension or 'folder':<10}"
                f" quantize: {','.join(r.quantize) or '-':<22} validated by: {runtime}"
            )
