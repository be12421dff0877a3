"""Rendering results for the terminal (rich) and as JSON rows."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from packager.render import human_size  # noqa: F401  (commands render sizes through here)


@contextlib.contextmanager
def library_prints_to_stderr() -> Iterator[None]:
    """Around a command's work: what a library prints goes to stderr, so stdout holds only packager's answer. With
    --trust the work runs in this process (a sandbox child's stdout never reaches the user), and tl2cgen's compile log
    ("Parallel compilation enabled; ...") printed before the rows made `convert --to all --json` unparseable (found by
    the zoo catalog run in-process, iris RandomForest and LightGBM ranker); onnxmltools prints a Spark model's
    coefficients the same way. Python-level writes only: a library writing to file descriptor 1 itself is not caught."""
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit_json(data: Any) -> None:
    """``--json`` output of every command."""
    import click

    from packager.jsonio import dumps

    click.echo(dumps(data))


def result_row(target: str, package: Any = None, error: Exception | None = None, by_design: bool = True) -> dict[str, Any]:
    """One target's result; an error is "refused" when it is a documented limit (``by_design``), else "error"."""
    if error is not None:
        return {
            "target": target,
            "status": "refused" if by_design else "error",
            "error": error.one_line() if hasattr(error, "one_line") else str(error),
        }
    m = package.manifest
    v = m.validation
    numeric = [o["max_abs"] for o in v["outputs"] if o["max_abs"] is not None]
    # agreement means something for labels, probabilities (best class) and class scores (top-1), not for regressions
    # or embeddings (a top-1 over embedding dimensions or regression targets is noise)
    labels = [
        o["agreement"] if o["agreement"] is not None else o.get("top1")
        for o in v["outputs"]
        if o.get("kind") in ("labels", "probabilities", "scores", "integer")
    ]
    labels = [a for a in labels if a is not None]
    q = m.quantization
    return {
        "target": target,
        "status": v["status"],
        "path": str(package.model_path),
        "size": q.size_after if q.applied else package.model_path.stat().st_size if package.model_path.is_file() else None,
        "size_before_quantization": q.size_before if q.mode else None,
        "quantization": (q.mode if q.applied else f"none ({q.reason})") if q.mode else None,
        "max_abs_diff": max(numeric) if numeric else None,
        "label_agreement": min(labels) if labels else None,
        "runtime": f"{v['runtime']} {v['runtime_version']}",
        "samples": v["samples"],
        "data": v.get("data_source"),
        "note": v.get("note", ""),
        "cast_effect": max((o["cast_effect"] for o in v["outputs"] if o.get("cast_effect")), default=None),
        "quantization_attempts": list(q.attempts) if q.attempts else None,
        "output_kinds": {o["name"]: f"{o['kind']} ({o['kind_rule']})" for o in v["outputs"] if o.get("kind_rule")} or None,
    }


SKIPPED = "skipped"  # --to all: a target whose converter takes other models only (packager.errors.NotApplicable)


def conversion_table(rows: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="packager results")
    for column in ("target", "status", "size", "quantization", "max |diff|", "agreement", "data", "validated by", "file / reason"):
        table.add_column(column, overflow="fold")
    styles = {"passed": "green", "failed": "red", "error": "red", "refused": "yellow"}
    shown = [r for r in rows if r["status"] != SKIPPED]  # named in the summary line instead
    for r in shown:
        status = f"[{styles.get(r['status'], 'cyan')}]{r['status']}[/]"
        if r["status"] in ("refused", "error"):
            table.add_row(r["target"], status, "", "", "", "", "", "", escape(r["error"]))
            continue
        size = human_size(r["size"])
        if r.get("size_before_quantization") and r["size_before_quantization"] != r["size"]:
            size = f"{human_size(r['size_before_quantization'])} → {size}"
        diff = f"{r['max_abs_diff']:.2e}" if r["max_abs_diff"] is not None else "—"
        agree = f"{r['label_agreement']:.1%}" if r["label_agreement"] is not None else "—"
        where = _relative(r["path"]) + (f"  → {r['pushed']}" if r.get("pushed") else "")
        data = f"{r.get('data') or '—'} ({r['samples']})"
        table.add_row(r["target"], status, size, escape(r["quantization"] or "—"), diff, agree, data, r["runtime"], where)
    console()(table)
    for r in shown:
        for line in _notes(r):
            console()(escape(f"{r['target']}: {line}"))
    if len(rows) > 1:
        console()(summary_line(rows))


def _notes(row: dict[str, Any]) -> list[str]:
    """One line each: synthetic data, a cast that changes the source's own outputs, the quantization modes tried."""
    lines = [row["note"]] if row.get("note") else []
    if row.get("cast_effect"):
        lines.append(
            f"casting the input to the signature's dtype alone changes the source's outputs by up to {row['cast_effect']:.3g} (cast_effect)"
        )
    if row.get("output_kinds"):  # which rule decided each output's kind, so a wrong one is visible before it misjudges
        lines.append("output kinds: " + ", ".join(f"{name}={kind}" for name, kind in row["output_kinds"].items()))
    for attempt in row.get("quantization_attempts") or []:
        lines.append(f"quantize {attempt['mode']}: {'kept' if attempt['kept'] else 'not kept'} ({attempt['why']})")
    return lines


def agreement_text(output: Any) -> str:
    """The agreement figure a kind has: labels and best class, top-1 for class scores, cosine for embeddings."""
    if output.kind == "scores" and output.top1 is not None:
        return f"top-1 {output.top1:.2%}"
    if output.kind == "embedding" and output.cosine is not None:
        return f"cosine {output.cosine:.5f}"
    if output.kind == "regression" and output.figures.get("r2") is not None:
        return f"R² {output.figures['r2']:.5f}"
    return f"{output.agreement:.2%}" if output.agreement is not None else "—"


def summary_line(rows: list[dict[str, Any]]) -> str:
    """How many targets passed, were refused by design (documented limits), or failed."""
    from packager.validation import NOT_EXECUTED, PASSED

    counts = {status: sum(r["status"] == status for r in rows) for status in (PASSED, NOT_EXECUTED, "refused", SKIPPED)}
    failed = len(rows) - sum(counts.values())
    parts = [f"{counts[PASSED]} passed"]
    parts += [f"{counts[NOT_EXECUTED]} {NOT_EXECUTED}"] if counts[NOT_EXECUTED] else []
    parts += [f"{counts['refused']} refused by design (documented limits)"] if counts["refused"] else []
    skipped = [r["target"] for r in rows if r["status"] == SKIPPED]
    parts += [f"{len(skipped)} skipped as made for other models ({', '.join(skipped)})"] if skipped else []
    parts += [f"{failed} failed"] if failed else []
    return ", ".join(parts)


def console():
    """A console as wide as the terminal, or 160 columns when output is piped (logs, CI)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160).print


def _relative(path: str) -> str:
    import os

    try:
        return os.path.relpath(path)
    except ValueError:
        return path


@contextlib.contextmanager
def progress_reporter(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A rich status line on a terminal; nothing when output is JSON or not a TTY."""
    import sys

    if quiet or not sys.stderr.isatty():
        yield lambda message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda message: status.update(message)
