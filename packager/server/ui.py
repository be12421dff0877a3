"""The web UI: server-rendered pages (Jinja2), no JavaScript build step, every asset served by the
package itself (no CDN). Pictures (the derivation graph, the metrics chart) are inline SVG drawn here.
"""

from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from packager.errors import PackagerError, UsageError
from packager.render import human_size

HERE = Path(__file__).parent
PAGE = 200  # models (or audit records) per list page
HISTORY = 50  # alias events shown on a model page, newest first (the API and the CLI give all)
PALETTE = ("#1f3f99", "#14633a", "#a4161a", "#b26b00", "#6b2fa3")
REFS = Query(default=[])  # ?ref=a&ref=b..., none when absent (made once here, as api.py does for LIMIT)


def build_ui(registry: Any, read_guard: Any) -> APIRouter:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["filesize"] = human_size
    env.filters["num"] = lambda x: "—" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)
    env.filters["urlencode"] = lambda s: quote(str(s), safe="@")
    from packager.server.tokens import prune_lineage, require_name, visible

    router = APIRouter(dependencies=[Depends(read_guard)], include_in_schema=False)
    READER = Depends(read_guard)  # the request's token: a names-limited one sees its models only, as over REST

    def page(template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context))  # never the catalog URL: it may hold a password

    @router.get("/", response_class=HTMLResponse)
    def models(
        q: str = Query(default="", max_length=2000), page_number: int = Query(default=1, ge=1, alias="page"), token: Any = READER
    ) -> HTMLResponse:
        error = ""
        try:
            found = visible(token, registry.search(q, limit=10_000) if q else registry.list())
        except PackagerError as exc:
            found, error = [], exc.one_line()
        newest: dict[str, Any] = {}
        aliases: dict[str, set[str]] = {}
        for info in found:  # search returns every matching version, newest first per model
            newest.setdefault(info.name, info)
            aliases.setdefault(info.name, set()).update(info.aliases)
        names = sorted(newest)
        pages = max(1, -(-len(names) // PAGE))
        shown = names[(page_number - 1) * PAGE : page_number * PAGE]
        summaries = {s["name"]: s for s in registry.model_summaries(shown)}
        rows = [
            {
                "name": name,
                "latest": newest[name],
                "aliases": sorted(aliases[name]),
                "versions": summaries.get(name, {}).get("versions", 1),
                "formats": summaries.get(name, {}).get("formats", [newest[name].format]),
            }
            for name in shown
        ]
        return page("models.html", rows=rows, total=len(names), q=q, error=error, page_number=page_number, pages=pages)

    @router.get("/models/{name}", response_class=HTMLResponse)
    def model(name: str, token: Any = READER) -> HTMLResponse:
        require_name(token, name)
        versions = registry.list(name)
        metric_keys = sorted({k for v in versions for k in v.metrics})[:6]
        aliases = sorted((a, v.version) for v in versions for a in v.aliases)
        trusted = getattr(registry, "supports_trust", False)
        history = list(reversed(registry.alias_history(name)))[:HISTORY] if trusted else []
        rules = registry.alias_rules(name) if trusted else {}
        return page(
            "model.html",
            name=name,
            versions=versions,
            metric_keys=metric_keys,
            aliases=aliases,
            history=history,
            rules=rules,
            trusted=trusted,
        )

    @router.get("/audit", response_class=HTMLResponse)
    def audit(
        name: str | None = Query(default=None, max_length=128),
        page_number: int = Query(default=1, ge=1, alias="page"),
        token: Any = READER,
    ) -> HTMLResponse:
        if name:
            require_name(token, name)
        records = registry.audit_log(name or None) if getattr(registry, "supports_trust", False) else []
        records = visible(token, records, lambda r: r["target"].partition("@")[0])
        chain = registry.verify_audit() if getattr(registry, "supports_trust", False) else None
        newest = list(reversed(records))
        pages = max(1, -(-len(newest) // PAGE))
        return page(
            "audit.html",
            records=newest[(page_number - 1) * PAGE : page_number * PAGE],
            chain=chain,
            name=name or "",
            page_number=page_number,
            pages=pages,
        )

    @router.get("/versions/{ref}", response_class=HTMLResponse)
    def version(ref: str, token: Any = READER) -> HTMLResponse:
        if "@" in ref or len(ref) != 36:  # a name in the reference: checked before the lookup, whose 404 would tell
            require_name(token, ref.partition("@")[0])
        info = registry.get(ref)
        require_name(token, info.name)
        manifest = dict(info.manifest)
        return page(
            "version.html",
            v=info,
            signature=manifest.get("signature", {"inputs": [], "outputs": []}),
            validation=manifest.get("validation", {}),
            lineage=dict(info.lineage),
            graph=derivation_svg(prune_lineage(token, registry.lineage(info.ref))),
        )

    @router.get("/compare", response_class=HTMLResponse)
    def compare(ref: list[str] = REFS, token: Any = READER) -> HTMLResponse:
        if not 2 <= len(ref) <= 5:
            raise UsageError(f"compare takes 2 to 5 versions, got {len(ref)}", "tick 2 to 5 versions on a model page")
        versions = [registry.get(r) for r in ref]
        for info in versions:
            require_name(token, info.name)
        return page("compare.html", versions=versions, rows=comparison_rows(versions), chart=metrics_svg(versions))

    return router


def comparison_rows(versions: list[Any]) -> list[dict[str, Any]]:
    """One row per field (format, size, validation, every param and metric); ``differs`` highlights it."""
    fields: list[tuple[str, Any]] = [
        ("format", lambda v: v.format),
        ("quantization", lambda v: v.quantization),
        ("validation", lambda v: v.validation),
        ("size", lambda v: human_size(v.size)),
    ]
    for key in sorted({k for v in versions for k in v.params}):
        fields.append((f"param.{key}", lambda v, k=key: v.params.get(k)))
    for key in sorted({k for v in versions for k in v.metrics}):
        fields.append((f"metric.{key}", lambda v, k=key: v.metrics.get(k)))
    rows = []
    for label, get in fields:
        values = [get(v) for v in versions]
        rows.append({"label": label, "cells": values, "differs": len({repr(x) for x in values}) > 1})
    return rows


def metrics_svg(versions: list[Any]) -> str:
    """Grouped bars: one group per metric, one bar per version (values scaled per metric)."""
    keys = sorted({k for v in versions for k in v.metrics})
    if not keys:
        return '<p class="muted">These versions record no metrics.</p>'
    gap, height = 28, 160
    bar = 34
    width = max(60 + len(keys) * (len(versions) * bar + gap), 60 + len(versions) * 150)
    parts = [
        f'<svg id="metrics-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 60}"'
        ' role="img" aria-label="metrics chart">'
    ]
    x = 50
    for key in keys:
        values = [v.metrics.get(key) for v in versions]
        top = max((abs(val) for val in values if val is not None), default=1.0) or 1.0
        for i, val in enumerate(values):
            if val is not None:
                h = abs(val) / top * (height - 14)
                parts.append(
                    f'<rect x="{x + i * bar}" y="{10 + height - h:.1f}" width="{bar - 3}" height="{h:.1f}"'
                    f' fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(versions[i].ref)} {escape(key)} = {val:g}</title></rect>'
                    f'<text x="{x + i * bar}" y="{6 + height - h:.1f}" font-size="10">{val:.4g}</text>'
                )
        parts.append(f'<text x="{x}" y="{height + 28}">{escape(key)}</text>')
        x += len(versions) * bar + gap
    for i, v in enumerate(versions):
        parts.append(
            f'<rect x="{50 + i * 150}" y="{height + 40}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{64 + i * 150}" y="{height + 49}">{escape(v.ref)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def derivation_svg(tree: dict[str, Any]) -> str:
    """The lineage tree (source -> ONNX -> int8) as boxes and arrows, the current version highlighted."""
    placed: list[tuple[dict[str, Any], int, int]] = []
    rows = [0]

    def place(node: dict[str, Any], depth: int) -> None:
        placed.append((node, depth, rows[0]))
        if not node.get("children"):
            rows[0] += 1
        for child in node.get("children", []):
            place(child, depth + 1)
        if node.get("children") and placed[-1][0] is node:
            rows[0] += 1

    place(tree, 0)
    box_w, box_h, dx, dy = 190, 34, 230, 46
    depth_max = max(d for _, d, _ in placed)
    width, height = 20 + (depth_max + 1) * dx, 20 + max(rows[0], 1) * dy
    where = {node["ref"]: (10 + d * dx, 10 + r * dy) for node, d, r in placed}
    parts = [
        f'<svg id="derivation" xmlns="http://www.w3.org/2000/svg"'
        f' width="{width}" height="{height}" role="img" aria-label="derivation graph">'
    ]
    for node, _, _ in placed:
        x0, y0 = where[node["ref"]]
        for child in node.get("children", []):
            x1, y1 = where[child["ref"]]
            parts.append(
                f'<path d="M{x0 + box_w} {y0 + box_h / 2} C{x0 + box_w + 20} {y0 + box_h / 2}'
                f' {x1 - 20} {y1 + box_h / 2} {x1} {y1 + box_h / 2}" fill="none" stroke="#6b7280"/>'
            )
    for node, _, _ in placed:
        x, y = where[node["ref"]]
        label = f'{node["ref"]} {node["format"]}' + (f' {node["quantization"]}' if node.get("quantization") else "")
        fill, stroke = ("#dfe7ff", "#1f3f99") if node.get("focus") else ("#ffffff", "#9aa3af")
        href = "/versions/" + quote(node["ref"], safe="@")
        parts.append(
            f'<a href="{href}"><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{x + 8}" y="{y + 21}">{escape(label)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
