"""The files ``packager optimize`` writes: optimize.json (the schema of issue 23), optimize.md (the table, best first)
and optimize.png (the Pareto front: speed against fidelity, size as the marker)."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    """The table, best first. Its rows/s and "× native" columns state the objective's own figure: at latency both come
    from p50 (batch rows / p50), as the choice does; bench's rows/s is total rows over total time, a mean, and read
    102,788 rows/s beside a p50 of 0.0064 ms (156,250 rows/s) while "× native" divided those means (issue 23, D12)."""
    b = result.baseline
    by_p50 = result.objective == "latency"
    rate, times = ("rows/s at p50", "× native (p50)") if by_p50 else ("rows/s", "× native (rows/s)")
    lines = [
        f"Objective: **{result.objective}** at batch size {result.batch_size}, {result.threads} thread(s); budget "
        f"({result.budget_source}): {', '.join(map(str, result.budget)) or 'the validation criteria only'}; "
        f"{result.data.get('held_out_rows')} held-out rows judge, {result.data.get('calibration_rows')} calibrate and measure.",
        f"Baseline (native): not measured ({b['skipped']})."
        if b.get("skipped")
        else f"Baseline (native {b.get('runtime', '')}): p50 {_num(b.get('latency_ms'), '.4g')} ms, "
        f"{_num(b.get('rows_per_s'), ',.0f')} rows/s (mean), {_num(b.get('size_bytes'), ',')} bytes"
        f"{'; error: ' + b['error'] if b.get('error') else ''}.",
        f"Chosen: **{result.chosen or 'none'}** — {result.why}.",
        *([f"**Warning: {result.data['warning']}.**"] if result.data.get("warning") else []),
        "",
        f"| candidate | status | runtime | within budget | fidelity | p50 ms | p95 ms | {rate} | {times} | size | peak RSS MB "
        "| pareto | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    native = b.get("latency_ms") if by_p50 else b.get("rows_per_s")
    for c in _rank(result):
        shown = ", ".join(f"{k} {v:.6g}" for k, v in c.fidelity.items() if v is not None)
        speed = c.latency_ms if by_p50 else c.rows_per_s
        ratio = f"{(native / speed if by_p50 else speed / native):.2f}×" if speed and native else "—"
        per_second = result.batch_size * 1000 / c.latency_ms if by_p50 and c.latency_ms else c.rows_per_s
        name = f"**{c.id}**" if c.id == result.chosen else c.id
        cells = [
            name,
            c.status,
            c.runtime or "—",
            "yes" if c.within_budget else "no",
            shown or "—",
            _num(c.latency_ms, ".4g"),
            _num(c.p95_ms, ".4g"),
            _num(per_second, ",.0f"),
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


UNTIMED_X = 0.035  # axes fraction where candidates over budget before their timing are drawn, inside the left strip
STRIP = 0.2  # the strip's width: this share of the timed figures' span (log x), left of them
SCORES = ("agreement", "top1", "cosine", "r2")  # 1 is perfect: plotted as 1 - score
ERRORS = ("max_abs_diff", "max_rel_diff")  # 0 is perfect


@dataclass(frozen=True)
class Point:
    number: int  # the label beside the marker, listed with the candidate's id on the right
    id: str
    speed: float | None  # p50 ms or rows/s; None: not timed (over budget before its measurement)
    distance: float  # the metric's distance from perfect (0: exact)
    size_bytes: int
    within_budget: bool
    chosen: bool
    pareto: bool


@dataclass(frozen=True)
class Axes:
    metric: str  # what the y axis shows, as distance from perfect
    note: str  # why that metric (the budget's, or max_abs_diff where the budget's is perfect for every candidate)
    line: float | None  # the budget's bound on that axis
    points: tuple[Point, ...]


def _distance(metric: str, value: float | None) -> float | None:
    if value is None or value != value:
        return None
    return max(0.0, 1.0 - value) if metric in SCORES else abs(value)


def plot_axes(result: Any) -> Axes:
    """What optimize.png draws. The y axis was "worst fidelity score": 1.0 for every candidate of an agreement or r2
    budget, so fp32 (max diff 3e-7) and int8 (1.4e-2) sat on one line (issue 23, D11). Now: the budget's metric as
    distance from perfect on a log scale; where that is perfect for every candidate (agreement 1 everywhere), the
    largest absolute difference, which still tells them apart."""
    judged = [c for c in result.candidates if c.fidelity and any(v is not None for v in c.fidelity.values())]
    bound = next(iter(result.budget), None)
    choices = ([bound.metric] if bound else []) + [m for m in ("max_abs_diff", *SCORES, "max_rel_diff") if not bound or m != bound.metric]
    distances = {name: [d for d in (_distance(name, c.fidelity.get(name)) for c in judged) if d is not None] for name in choices}
    kept = [c for c in judged if c.within_budget]  # what the user chooses among: the axis must tell them apart
    apart = [name for name in choices if len({_distance(name, c.fidelity.get(name)) for c in kept} - {None}) > 1]
    telling = [name for name in choices if distances[name] and max(distances[name]) > 0]  # not perfect everywhere
    given = [name for name in choices if distances[name]]
    metric, note = (apart or telling or given or [""])[0], ""
    if bound and metric != bound.metric:
        note = f"{bound.metric} does not tell the candidates within budget apart: showing {metric}"
    line = _distance(metric, bound.value) if bound and metric == bound.metric else None
    points: list[Point] = []
    for c in sorted(judged, key=lambda c: (c.id != result.chosen, not c.within_budget, c.id)):
        distance = _distance(metric, c.fidelity.get(metric)) if metric else None
        if distance is None:
            continue
        speed = c.rows_per_s if result.objective == "throughput" else c.latency_ms
        points.append(Point(len(points) + 1, c.id, speed, distance, c.size_bytes or 0, c.within_budget, c.id == result.chosen, c.pareto))
    return Axes(metric, note, line, tuple(points))


def plot(result: Any, path: Path) -> None:
    """Speed against fidelity (distance from perfect, log), size as the marker's area, numbered labels listed on the
    right (ids overlapped when candidates share a speed), over-budget candidates hollow (those never timed on the left
    edge), the budget as a line, and a message when nothing was measured."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import math

    import matplotlib.pyplot as plt

    axes = plot_axes(result)
    fig, (ax, side) = plt.subplots(1, 2, figsize=(11, 5.5), gridspec_kw={"width_ratios": [3, 1.1]})
    side.axis("off")
    speed = "rows_per_s" if result.objective == "throughput" else "latency_ms"
    timed = [p for p in axes.points if p.speed]
    ax.set_title(f"optimize: {result.objective} at batch {result.batch_size}, {result.threads} thread(s)", fontsize=10)
    if not timed:
        ax.text(0.5, 0.5, "nothing was measured:\nsee optimize.md for each candidate's status and reason", ha="center", va="center",
                transform=ax.transAxes, fontsize=11)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        floor = min([p.distance for p in axes.points if p.distance > 0] + ([axes.line] if axes.line else []) + [1e-6]) / 10
        sizes = [p.size_bytes for p in axes.points if p.size_bytes] or [1]
        low, high = math.log10(min(sizes)), math.log10(max(sizes))

        def area(size_bytes: int) -> float:
            return 40.0 + 460.0 * ((math.log10(size_bytes) - low) / (high - low) if size_bytes and high > low else 0.5)

        labels: dict[
            tuple[float, float], tuple[float | None, float, list[str]]
        ] = {}  # candidates at one spot (a runtime setting that changed
        # nothing, the same file in two containers) share one label "1,3,4" instead of numbers printed over each other
        x_logs = [math.log10(p.speed) for p in timed if p.speed]
        y_logs = [math.log10(max(p.distance, floor)) for p in axes.points]
        x_near = max(0.03 * (max(x_logs) - min(x_logs)), 0.005)  # "the same spot": within 3% of each axis' span
        y_near = max(0.03 * (max(y_logs) - min(y_logs)), 0.05)
        for p in sorted(axes.points, key=lambda p: p.chosen):  # the chosen star drawn last, on top
            y = max(p.distance, floor)
            style = dict(
                s=max(area(p.size_bytes), 220.0) if p.chosen else area(p.size_bytes),
                marker="*" if p.chosen else "o",
                facecolors=("tab:green" if p.chosen else "tab:blue") if p.within_budget else "none",
                edgecolors="black" if p.pareto or not p.within_budget else "tab:blue",
                linewidths=1.5 if p.pareto else 1.0,
                alpha=0.75,
            )
            if p.speed:
                ax.scatter([p.speed], [y], zorder=4 if p.chosen else 3, **style)
            else:  # over budget before its timing: on the left edge at its fidelity
                ax.scatter([UNTIMED_X], [y], transform=ax.get_yaxis_transform(), clip_on=False, zorder=3, **style)
            spot = (math.log10(p.speed) if p.speed else -99.0, math.log10(y))
            near = next((k for k in labels if abs(k[0] - spot[0]) < x_near and abs(k[1] - spot[1]) < y_near), spot)
            labels.setdefault(near, (p.speed, y, []))[2].append(str(p.number))
        for x, y, numbers in labels.values():
            text = ",".join(sorted(numbers, key=int))
            if x is None:
                ax.annotate(text, (UNTIMED_X, y), xycoords=ax.get_yaxis_transform(), fontsize=8, xytext=(6, 3), textcoords="offset points")
            else:
                ax.annotate(text, (x, y), fontsize=8, xytext=(6, 3), textcoords="offset points")
        if axes.line is not None:
            ax.axhline(max(axes.line, floor), color="tab:red", linestyle=":", label=f"budget {result.budget[0]}")
        base = result.baseline.get(speed)
        if base:
            ax.axvline(base, linestyle="--", color="grey", label="native baseline")
        ax.set_xscale("log")
        if any(not p.speed for p in axes.points):  # a strip on the left for them, apart from every timed figure
            marks = [math.log10(v) for v in [*(p.speed for p in timed), base] if v]
            low_x, span = min(marks), max(max(marks) - min(marks), 0.3)
            ax.set_xlim(10 ** (low_x - span * STRIP), 10 ** (max(marks) + span * 0.05))
            ax.axvspan(10 ** (low_x - span * STRIP), 10 ** (low_x - span * STRIP / 2), color="0.92", zorder=0)
            ax.text(UNTIMED_X / 2, 0.5, "not timed", transform=ax.transAxes, rotation=90, va="center", fontsize=7, color="grey")
        ax.set_yscale("log")
        tops = [max(p.distance, floor) for p in axes.points] + ([axes.line] if axes.line else [])
        ax.set_ylim(floor / 2, max(tops) * 2)  # the untimed points (drawn in axis coordinates) do not widen it themselves
        if any(p.distance == 0 for p in axes.points):
            ax.axhline(floor, color="lightgrey", linewidth=0.8)
            ax.text(1.0, floor, " exact", transform=ax.get_yaxis_transform(), va="center", fontsize=7, color="grey")
        ax.set_xlabel("rows/s (higher is better)" if speed == "rows_per_s" else "p50 latency ms (lower is better)")
        perfect = "1 - " + axes.metric if axes.metric in SCORES else axes.metric
        ax.set_ylabel(f"{perfect} on held-out rows (lower is better)")
        ax.grid(True, which="both", alpha=0.3)
        from matplotlib.lines import Line2D

        def key(marker: str, face: str, label: str) -> Line2D:
            return Line2D([], [], marker=marker, linestyle="", markersize=9, markerfacecolor=face, markeredgecolor="black", label=label)

        handles = [
            key("*", "tab:green", "chosen"),
            key("o", "tab:blue", "within budget (black edge: Pareto)"),
            key("o", "none", "over budget"),
        ]
        side.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="lower left")  # off the points
    lines = [f"{p.number:>2}  {p.id}" + ("" if p.within_budget else "  (over budget)") + ("" if p.speed else "  (not timed)")
             for p in axes.points]  # fmt: skip
    if axes.note:
        import textwrap

        lines += ["", *textwrap.wrap(axes.note, 42)]
    if timed:
        lines += ["", "marker area: file size", f"({min(sizes):,} to {max(sizes):,} bytes)"]
    side.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7, transform=side.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
