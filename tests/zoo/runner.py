"""Runs a zoo entry's command through the real CLI (a subprocess, as a user types it) and turns every target's
answer into an :class:`Outcome`: passed (and re-run on held-out rows in its own runtime), refused by design
(the catalog's documented reason, or a quantization mode the support matrix does not list), or failed.

Shared by ``tests/zoo/test_zoo_catalog.py`` and ``benchmarks/zoo.py``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from packager.errors import NotQuantizable, UnsupportedConversion
from tests.zoo.catalog import Entry, Saved, rerun

ROOT = Path(__file__).resolve().parents[2]
PASSED, BY_DESIGN, FAILED = "passed", "refused by design", "failed"
NOT_EXECUTED = "structure-checked, not executed"  # Core ML on Linux: packager's own status, a pass


@dataclass(frozen=True)
class Outcome:
    model: str
    target: str
    quantize: str | None
    status: str  # PASSED, BY_DESIGN or FAILED
    detail: str  # the refusal or error line; the quantization applied for a pass
    exit_code: int
    known: str | None = None  # a failure the catalog records as found and reported (never "by design"): its reason
    data_source: str | None = None  # where packager's own validation rows came from (its manifest)
    samples: int | None = None
    fidelity: tuple[str, float] | None = None  # re-run here on held-out rows; None where no runtime exists on Linux
    size: int | None = None
    seconds: float | None = None  # this target's share of the command (see _seconds)
    cli_refused: bool = False  # the CLI itself called it a refusal (UnsupportedConversion/NotQuantizable), documented or not


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def quantizable() -> dict[str, set[str]]:
    """(framework, target) -> the quantization modes the support matrix lists (a mode not listed is a documented refusal)."""
    from packager.plugins import default_registry

    return {key: set(c.quantize) for key, c in default_registry().conversions.items()}


def run(entry: Entry, saved: Saved, targets: tuple[str, ...], quantize: str | None, out: Path,
        call: Callable[..., subprocess.CompletedProcess] = cli) -> tuple[list[Outcome], str]:
    """One CLI call (``--to`` each of targets, ``--quantize`` if given) -> one Outcome per target, and the stderr.
    ``call``: the real CLI in a subprocess (the zoo report), or the suite's in-process CLI (tests/zoo/test_zoo_catalog.py)."""
    args = ["convert", str(saved.path), *[a for t in targets for a in ("--to", t)], "-o", str(out), "--json", *entry.cli_args(saved)]
    args += ["--quantize", quantize] if quantize else []
    started = time.time()
    done = call(*args)
    if done.returncode != 0 and not done.stdout.strip().startswith("["):  # the command failed as a whole: one stderr line
        target = targets[0] if len(targets) == 1 else "+".join(targets)
        line = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}, no message"
        refusable = done.returncode in (UnsupportedConversion.exit_code, NotQuantizable.exit_code)
        return [_judged(entry, target, quantize, line, done.returncode, refusable=refusable)], done.stderr
    rows = json.loads(done.stdout)
    matrix = quantizable()
    outcomes = []
    previous = started
    for row in rows:
        target = row["target"]
        if row["status"] == "skipped":  # --to all: a converter made for other models (e.g. lleaves for a Ridge): by design
            outcomes.append(Outcome(entry.name, target, quantize, BY_DESIGN, row["error"], done.returncode, cli_refused=True))
            continue
        if row["status"] in ("refused", "error"):
            unlisted_mode = quantize is not None and quantize not in matrix.get((entry.framework, target), set())
            outcomes.append(_judged(entry, target, quantize, row["error"], done.returncode, refusable=row["status"] == "refused",
                                    unlisted_mode=unlisted_mode))
            continue
        seconds, previous = _seconds(Path(row["path"]), previous)
        ok = row["status"] in (PASSED, NOT_EXECUTED)
        outcomes.append(Outcome(entry.name, target, quantize, PASSED if ok else FAILED, row.get("quantization") or row["status"],
                                done.returncode, data_source=row.get("data"), samples=row.get("samples"),
                                fidelity=rerun(target, Path(row["path"]), saved), size=row.get("size") or _size(Path(row["path"])),
                                seconds=seconds))
    return outcomes, done.stderr


def _judged(entry: Entry, target: str, quantize: str | None, line: str, code: int, *, refusable: bool,
            unlisted_mode: bool = False) -> Outcome:
    """A refusal is by design only when the CLI calls it one (or it is a single target) AND the catalog documents the
    reason (or the support matrix lists no such quantization mode); anything else is a failure, known or new.
    A target reached through ONNX (openvino) whose ONNX hop failed is judged as ``--to onnx`` is (packager.graph)."""
    if re.search(r"hop \S+ -> onnx \(", line) and target != "onnx":
        return replace(_judged(entry, "onnx", quantize, line, code, refusable=refusable, unlisted_mode=unlisted_mode), target=target)
    refusal = entry.refusal(target, quantize)
    documented = (refusal is not None and re.search(refusal.match, line) is not None) or unlisted_mode
    if refusable and documented:
        return Outcome(entry.name, target, quantize, BY_DESIGN, line, code, cli_refused=True)
    known = entry.known_failure(target, quantize)
    reason = known.why if known is not None and re.search(known.match, line) else None
    return Outcome(entry.name, target, quantize, FAILED, line, code, known=reason, cli_refused=refusable)


def _seconds(model_path: Path, previous: float) -> tuple[float, float]:
    """Targets run one after another in one process: a target's time is from the previous manifest written (or the
    command's start, which includes imports and loading the source) to its own manifest."""
    written = (model_path.parent / "manifest.json").stat().st_mtime
    return round(written - previous, 2), written


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
