"""The model zoo report: every catalog entry (tests/zoo/catalog.py) through the real CLI, ``--to all`` and
``--to all --quantize``; every produced file re-run in its own runtime on held-out real data.

    python benchmarks/zoo.py [OUT_DIR] [--only NAME ...]     # default: benchmarks/results/ -> zoo.md, zoo.json

Status per model x target x quantization: passed / refused by design (a documented limit) / failed (a known,
reported failure says so; anything else is new). Time is the target's share of its CLI call (manifest write times;
the first target of a call carries the imports and the source's loading).
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.zoo.catalog import CATALOG  # noqa: E402
from tests.zoo.runner import BY_DESIGN, FAILED, PASSED, run  # noqa: E402


def main(argv: list[str]) -> int:
    only = argv[argv.index("--only") + 1:] if "--only" in argv else []
    rest = argv[:argv.index("--only")] if "--only" in argv else argv
    out = Path(rest[0]) if rest else ROOT / "benchmarks" / "results"
    entries = [e for e in CATALOG if not only or e.name in only]
    rows, started = [], time.time()
    with tempfile.TemporaryDirectory(prefix="zoo-") as work:
        for entry in entries:
            saved = entry.build(Path(work))
            for quantize in (None, "dynamic"):
                t0 = time.time()
                outcomes, _ = run(entry, saved, ("all",), quantize, Path(work) / f"{entry.name}-{quantize or 'fp32'}")
                print(f"{entry.name} {quantize or 'fp32'}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
                rows += [{**asdict(o), "data": entry.data} for o in outcomes]
    summary = {s: sum(r["status"] == s for r in rows) for s in (PASSED, BY_DESIGN, FAILED)}
    summary["failed, new"] = sum(r["status"] == FAILED and not r["known"] for r in rows)
    meta = {"models": len(entries), "seconds": round(time.time() - started, 1), "python": platform.python_version(), "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / "zoo.md").write_text(render(meta, rows))
    print(json.dumps(meta))
    return 0


def render(meta: dict, rows: list[dict]) -> str:
    lines = ["# Model zoo: every catalog model through `packager convert --to all [--quantize]`", "",
             f"{meta['models']} models, {meta['seconds']} s wall on this machine (shared, 2 cores). "
             + ", ".join(f"{k}: {v}" for k, v in meta["summary"].items()) + ".", "",
             "Fidelity: the produced file run here in its own runtime on held-out real rows, against the source model "
             "(agreement of labels / best class, R² for regressions, min cosine for embeddings); '—' where no runtime runs "
             "it on Linux (Core ML, PMML, MLeap, frozen .pb). Data: where packager's own validation rows came from.", "",
             "| model | target | quantize | status | data (packager) | held-out fidelity | size | time (s) | detail |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fidelity = f"{r['fidelity'][0]} {r['fidelity'][1]:.4f}" if r["fidelity"] else "—"
        status = r["status"] + (" (known)" if r["known"] else "")
        detail = (r["known"] + ": " if r["known"] else "") + r["detail"]
        size = f"{r['size'] / 1024:.1f} KB" if r["size"] else "—"
        lines.append(f"| {r['model']} | {r['target']} | {r['quantize'] or '—'} | {status} | {r['data_source'] or '—'} | {fidelity} "
                     f"| {size} | {r['seconds'] if r['seconds'] is not None else '—'} | {detail.replace('|', '/')[:220]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
