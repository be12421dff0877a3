"""The support matrix, derived from the conversion graph (``packager.graph``): one row per (source, target) a source
reaches, directly or through other formats, with the path the core takes. The README table is rendered from this."""

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
    via: tuple[str, ...] = ()  # the intermediate formats of the path (empty: one converter)


def support_matrix(registry: PluginRegistry | None = None) -> list[MatrixRow]:
    """Every source (a framework, or a format an edge starts from) and every target it reaches."""
    from packager.graph import reachable

    registry = registry or default_registry()
    rows = []
    for source in sorted({s for s, _ in registry.conversions}):
        for target, route in sorted(reachable(registry, source).items()):
            if source not in registry.frameworks and len(route.hops) > 1:
                continue  # a format source lists its own edges; longer paths are the frameworks' rows
            runtime = registry.runtimes.get(target)
            last = route.hops[-1]
            rows.append(
                MatrixRow(
                    source=source,
                    target=target,
                    extension=registry.format(target).suffix,
                    quantize=tuple(sorted(last.quantize)),
                    validated_by=runtime.cls.name if runtime else "(none)",
                    executes=bool(runtime and runtime.cls.executes),
                    note=last.note if len(route.hops) == 1 else "",
                    via=route.via,
                )
            )
    return rows


def matrix_markdown(rows: list[MatrixRow]) -> str:
    lines = ["| source | target | via | file | quantization | validated by | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        check = r.validated_by if r.executes else f"{r.validated_by} — not executed"
        via = " → ".join(r.via) or "—"
        lines.append(
            f"| {r.source} | {r.target} | {via} | `{r.extension or 'folder'}` | {', '.join(r.quantize) or '—'} | {check} | {r.note} |"
        )
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
