"""Validation verdicts over the zoo (issue 26): every catalog model x quantization, with the checks the verdict must pass.

    nice python benchmarks/validation_verdicts.py [--models NAME,...] [--frameworks sklearn,keras] [--out ...md]

Each zoo entry (``tests/zoo/catalog.py``) is built, then converted to ONNX through ``packager.conversion.convert``
(``trust=True``: our own files, no sandbox child per conversion) unquantized, ``--quantize dynamic``, ``fp16`` and, where
the held-out rows are a numeric matrix, ``static`` calibrated on them; ``--accept-mismatch`` on so a failing check
still yields its report. Independently of packager's report, the ONNX file is re-run here in onnxruntime on the held-out
rows (``catalog.RUNTIMES``) and compared with the source model's own outputs for NaN/inf on one side only. A cell is a
**violation** when the verdict passed although (a) the artifact gives inf/NaN where the source is finite, or (b) its fp32
parent fails its own criterion. Output kinds are listed with the rule that decided them (plugin / values / flag).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = (None, "dynamic", "fp16", "static")


def _one_sided(expected, got) -> int:
    """Held-out rows where the artifact gives NaN/inf and the source does not (or the reverse)."""
    import numpy as np

    want = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    have = np.asarray(got, dtype=np.float64).reshape(len(want), -1)
    if want.shape != have.shape:
        return 0
    return int((np.isfinite(want) != np.isfinite(have)).any(axis=1).sum())


def run(entries, work: Path) -> list[dict]:
    import numpy as np

    from packager.conversion import convert
    from packager.errors import PackagerError
    from tests.zoo.catalog import RUNTIMES

    results = []
    for entry in entries:
        try:
            saved = entry.build(work)
        except Exception as exc:  # a builder that cannot run here (no checkpoint, no library): said in the table
            results.append({"model": entry.name, "quantize": "—", "verdict": "not built", "note": f"{type(exc).__name__}: {exc}"})
            continue
        held = saved.held_out
        numeric = isinstance(held, np.ndarray) and held.dtype.kind == "f"
        sample = None
        if saved.sample is not None:
            sample = saved.sample
        elif numeric:
            sample = work / f"{entry.name}_rows.npy"
            np.save(sample, held)
        elif hasattr(held, "to_csv"):
            sample = work / f"{entry.name}_rows.csv"
            held.to_csv(sample, index=False)
        for mode in MODES:
            if mode == "static" and not numeric:
                continue
            row = {"model": entry.name, "framework": entry.framework, "quantize": mode or "—", "verdict": "", "parent": "",
                   "one_sided": None, "kinds": "", "note": ""}
            started = time.perf_counter()
            try:
                options = {"quantize": mode, "accept_mismatch": True, "trust": True, "sample": sample}
                if "--model-class" in entry.args:  # a state dict: the code the user names on the command line
                    options["model_class"] = entry.args[entry.args.index("--model-class") + 1]
                if mode == "static":
                    options["calibration"] = sample
                package = convert(saved.path, to="onnx", out=work / "out" / f"{entry.name}-{mode}", **options)
                report, quant = package.manifest.validation, package.manifest.quantization
                row["verdict"] = "failed" if report.get("accepted_mismatch") else report.get("status", "?")
                row["parent"] = (report.get("parent") or {}).get("status", "")
                row["kinds"] = "; ".join(f"{o['name']}={o['kind']} ({o.get('kind_rule', '')})" for o in report.get("outputs", []))
                failing = [f"{o['name']}: {o.get('note', '')}" for o in report.get("outputs", []) if not o.get("passed")]
                if (report.get("parent") or {}).get("status") == "failed":
                    failing.insert(0, "fp32 parent fails")
                if mode and not quant.applied:
                    row["note"] = f"not quantized: {quant.reason}"
                row["note"] = "; ".join(filter(None, [row["note"], *failing]))
                runner = RUNTIMES.get("onnx")
                try:
                    row["one_sided"] = _one_sided(saved.expected, runner(package.model_path, held))
                except Exception as exc:  # the independent re-run is best effort (multi-input models)
                    row["one_sided"] = None
                    row["note"] += f" (re-run here: {type(exc).__name__})"
            except PackagerError as exc:
                row["verdict"], row["note"] = "refused/error", f"{type(exc).__name__}: {exc.what}"
            except Exception as exc:
                row["verdict"], row["note"] = "crash", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            row["violation"] = row["verdict"] == "passed" and (bool(row["one_sided"]) or row["parent"] == "failed")
            row["seconds"] = round(time.perf_counter() - started, 1)
            results.append(row)
            print(f"{entry.name:<40} {mode or 'fp32':<8} {row['verdict']:<14} {row['note'][:90]}", file=sys.stderr, flush=True)
    return results


def _short(text: str, limit: int = 140) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(results: list[dict], scope: str, load: str) -> str:
    verdicts: dict[str, int] = {}
    for r in results:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    violations = [r for r in results if r.get("violation")]
    lines = [
        "# Validation verdicts over the zoo (issue 26)",
        "",
        "Generated by `benchmarks/validation_verdicts.py` (see its docstring for the method). Scope: " + scope + ".",
        f"Load average when run: {load}.",
        "",
        f"{len(results)} cells: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items(), key=lambda kv: -kv[1]))
        + f". **Violations** (passed although inf/NaN on one side in the independent re-run, or the fp32 parent fails): "
        f"{len(violations)}.",
        "",
        "`one-sided` = held-out rows where onnxruntime (run here, not by packager) gives NaN/inf and the source does not.",
        "",
        "| model | quantize | verdict | fp32 parent | one-sided | output kinds (rule) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one = "—" if r.get("one_sided") is None else str(r["one_sided"])
        flag = " **VIOLATION**" if r.get("violation") else ""
        lines.append(f"| {r['model']} | {r['quantize']} | {r['verdict']}{flag} | {r.get('parent') or '—'} | {one} | "
                     f"{_short(r.get('kinds', ''), 90)} | {_short(r.get('note', ''))} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated catalog names (default: all)")
    parser.add_argument("--frameworks", help="comma-separated frameworks (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "validation_verdicts.md"))
    parser.add_argument("--merge", action="store_true", help="replace these models' rows in the existing table, keep the rest")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.filterwarnings("ignore")
    from tests.zoo.catalog import CATALOG

    entries = [e for e in CATALOG if (not args.models or e.name in args.models.split(","))
               and (not args.frameworks or e.framework in args.frameworks.split(","))]
    scope = f"{len(entries)} of {len(CATALOG)} catalog models" + (f" (frameworks {args.frameworks})" if args.frameworks else "") \
        + (f" (models {args.models})" if args.models else "")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="verdicts-") as temp:
        results = run(entries, Path(temp))
    out = Path(args.out)
    if args.merge and out.with_suffix(".json").is_file():
        fresh = {r["model"] for r in results}
        kept = [r for r in json.loads(out.with_suffix(".json").read_text()) if r["model"] not in fresh]
        order = {e.name: i for i, e in enumerate(CATALOG)}
        results = sorted(kept + results, key=lambda r: order.get(r["model"], len(order)))
        scope = out.read_text().split("Scope: ", 1)[1].split("\n", 1)[0].rstrip(".") + f"; rows of {', '.join(sorted(fresh))} re-run"
    out.write_text(render(results, scope, load))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(out)


if __name__ == "__main__":
    main()
