"""The files ``packager optimize`` writes: optimize.json (the schema of issue 23), optimize.md (the table, best first)
and optimize.png (the Pareto front: speed against fidelity, size as the marker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = {"measured": 0, "pruned": 1, "over-budget": 2, "refused": 3, "failed": 4}


def write_report(result: Any, folder: Path) -> dict[str, Path]:
    paths = {"json": folder / "optimize.json", "markdown": folder / "optimize.md", "plot": folder / "optimize.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(markdown(result))
    plot(result, paths["plot"])
    return paths


def _rank(result: Any) -> list[Any]:
    """Best first: the chosen one, then measured by the objective, then the rest by status."""

    def key(c: Any) -> tuple:
        score = {"latency": c.latency_ms, "throughput": -(c.rows_per_s or 0), "size": c.size_bytes}[result.objective]
        return (c.id != result.chosen, ORDER.get(c.status, 9), score if score is not None else float("inf"), c.id)

    return sorted(result.candidates, key=key)


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def markdown(result: Any) -> str:
    b = result.baseline
    lines = [
        f"Objective: **{result.objective}** at batch size {result.batch_size}, {result.threads} thread(s); budget "
        f"({result.budget_source}): {', '.join(map(str, result.budget)) or 'the validation criteria only'}; "
        f"{result.data.get('held_out_rows')} held-out rows judge, {result.data.get('calibration_rows')} calibrate and measure.",
        f"Baseline (native): not measured ({b['skipped']})."
        if b.get("skipped")
        else f"Baseline (native {b.get('runtime', '')}): p50 {_num(b.get('latency_ms'), '.4g')} ms, "
        f"{_num(b.get('rows_per_s'), ',.0f')} rows/s, {_num(b.get('size_bytes'), ',')} bytes"
        f"{'; error: ' + b['error'] if b.get('error') else ''}.",
        f"Chosen: **{result.chosen or 'none'}** — {result.why}.",
        "",
        "| candidate | status | runtime | within budget | fidelity | p50 ms | p95 ms | rows/s | × native | size | peak RSS MB "
        "| pareto | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    native = b.get("rows_per_s")
    for c in _rank(result):
        shown = ", ".join(f"{k} {v:.6g}" for k, v in c.fidelity.items() if v is not None)
        ratio = f"{c.rows_per_s / native:.2f}×" if c.rows_per_s and native else "—"
        name = f"**{c.id}**" if c.id == result.chosen else c.id
        cells = [
            name,
            c.status,
            c.runtime or "—",
            "yes" if c.within_budget else "no",
            shown or "—",
            _num(c.latency_ms, ".4g"),
            _num(c.p95_ms, ".4g"),
            _num(c.rows_per_s, ",.0f"),
            ratio,
            _num(c.size_bytes, ","),
            _num(c.peak_rss_mb, ".0f"),
            "★" if c.pareto else "",
            (c.reason or "").replace("|", "/")[:240],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if result.not_tried:
        lines += ["", f"Not tried (time budget): {', '.join(result.not_tried)}."]
    return "\n".join(lines) + "\n"


def plot(result: Any, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    speed = "rows_per_s" if result.objective == "throughput" else "latency_ms"
    for c in result.candidates:
        x = getattr(c, speed)
        values = [v for k, v in c.fidelity.items() if k in ("agreement", "top1", "cosine", "r2") and v is not None]
        if x is None or not values:
            continue
        size = max(20.0, min(600.0, (c.size_bytes or 0) / 2e4))
        ax.scatter(
            [x], [min(values)], s=size, marker="*" if c.id == result.chosen else "o", alpha=0.7, edgecolors="black" if c.pareto else "none"
        )
        ax.annotate(c.id, (x, min(values)), fontsize=7, xytext=(4, 4), textcoords="offset points")
    base = result.baseline.get(speed)
    if base:
        ax.axvline(base, linestyle="--", color="grey", label="native baseline")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("rows/s (higher is better)" if speed == "rows_per_s" else "p50 latency ms (lower is better)")
    ax.set_ylabel("worst fidelity score on held-out rows")
    ax.set_title(f"optimize: {result.objective} at batch {result.batch_size} (marker size: file size; edged: Pareto front)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
