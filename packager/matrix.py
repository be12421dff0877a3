"""The support matrix, generated from the plugin registry (the README table is rendered from this)."""

from __future__ import annotations

from dataclasses import dataclass

from packager.plugins import PluginRegistry, default_registry


@dataclass(frozen=True)
class MatrixRow:
    source: str
    target: str
    extension: str
    quantize: tuple[str, ...]
    validated_by: str
    executes: bool
    note: str


def support_matrix(registry: PluginRegistry | None = None) -> list[MatrixRow]:
    registry = registry or default_registry()
    rows = []
    for (source, target), conversion in sorted(registry.conversions.items()):
        runtime = registry.runtimes.get(target)
        info = registry.format(target)
        rows.append(
            MatrixRow(
                source=source,
                target=target,
                extension=info.suffix,
                quantize=tuple(sorted(conversion.quantize)),
                validated_by=runtime.cls.name if runtime else "(none)",
                executes=bool(runtime and runtime.cls.executes),
                note=conversion.note,
            )
        )
    return rows


def matrix_markdown(rows: list[MatrixRow]) -> str:
    lines = ["| source | target | file | quantization | validated by | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        check = r.validated_by if r.executes else f"{r.validated_by} — not executed"
        lines.append(f"| {r.source} | {r.target} | `{r.extension or 'folder'}` | {', '.join(r.quantize) or '—'} | {check} | {r.note} |")
    return "\n".join(lines)


START, END = "<!-- support-matrix:start -->", "<!-- support-matrix:end -->"


def render_readme(text: str, rows: list[MatrixRow]) -> str:
    """Replace the README's generated block with the current matrix."""
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n{matrix_markdown(rows)}\n{END}{after}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(render_readme(readme.read_text(), support_matrix()))
    print(f"updated the support matrix in {readme}")
