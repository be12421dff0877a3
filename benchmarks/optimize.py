"""`packager optimize` on the issue 23 anchors: what it chooses, and how fast the choice is against the native library
and the plain fp32 ONNX package, measured side by side in the same optimize run (its final bench run).

Models (built here, never committed): 20 informative-ish features from ``make_classification`` (100,000 rows, trained
on 20,000): RandomForest 200 trees (max_depth 12), LightGBM 500 trees, XGBoost 500 trees (max_depth 6); the small
case: StandardScaler + LogisticRegression on breast_cancer (scikit-learn's bundled data). Each tree model is optimized
twice: ``--objective latency`` (batch 1) and ``--objective throughput`` (batch 16,384), 1 thread, budget
``max_abs_diff<=1e-5`` for the forests (as the issue's goal) and the default budget for the logistic regression.
``--formats`` limits the search to the targets that matter for trees (onnx, the native format, lleaves, treelite), so
PMML (minutes of JVM per candidate here) is not measured in this table. MiniLM and OpenVINO: pending (the OpenVINO
target arrives with the conversion-graph branch; no figures are invented here).

    python benchmarks/optimize.py [--only rf,lgbm,xgb,logistic] [--trust]   # writes benchmarks/results/optimize.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def build(work: Path) -> dict[str, tuple[Path, list[str], list[str]]]:
    """name -> (model file, formats to search, budget)."""
    import lightgbm as lgb
    import pandas as pd
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer, make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(40_000, 20, n_informative=12, random_state=0)
    pd.DataFrame(X[20_000:].astype("float32"), columns=[f"f{i}" for i in range(20)]).to_parquet(work / "rows.parquet")
    Xt, yt = X[:20_000], y[:20_000]
    rf = RandomForestClassifier(200, max_depth=12, random_state=0, n_jobs=1).fit(Xt, yt)
    (work / "rf.pkl").write_bytes(pickle.dumps(rf))
    lgb.LGBMClassifier(n_estimators=500, verbose=-1).fit(Xt, yt).booster_.save_model(str(work / "lgbm.txt"))
    xgb.XGBClassifier(n_estimators=500, max_depth=6).fit(Xt, yt).save_model(str(work / "xgb.json"))
    Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
    (work / "logistic.pkl").write_bytes(pickle.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(Xc, yc)))
    Xc.to_parquet(work / "cancer.parquet")
    budget = ["max_abs_diff<=1e-5"]
    return {
        "rf": (work / "rf.pkl", ["onnx", "treelite", "pickle"], budget),
        "lgbm": (work / "lgbm.txt", ["onnx", "lleaves", "treelite", "lightgbm"], budget),
        "xgb": (work / "xgb.json", ["onnx", "treelite", "xgboost-json"], budget),
        "logistic": (work / "logistic.pkl", ["onnx", "skops"], []),
    }


def run(name: str, model: Path, formats: list[str], budget: list[str], data: Path, objective: str, out: Path, trust: bool) -> dict:
    from packager.optimize import optimize

    started = time.monotonic()
    load = os.getloadavg()[0]
    result = optimize(
        model,
        data,
        out,
        objective=objective,
        formats=formats,
        budget=budget,
        trust=trust,
        progress=lambda m: print(f"  {name}: {m}", flush=True),
    )
    by_id = {c.id: c for c in result.candidates}
    chosen = by_id.get(result.chosen) if result.chosen else None
    onnx = by_id.get("onnx")
    base = result.baseline.get("rows_per_s")

    def ratio(c):
        return round(c.rows_per_s / base, 2) if c is not None and c.rows_per_s and base else None

    return {
        "model": name,
        "objective": objective,
        "batch_size": result.batch_size,
        "chosen": result.chosen,
        "why": result.why,
        "chosen_x_native": ratio(chosen),
        "onnx_x_native": ratio(onnx) if onnx is not None and onnx.status == "measured" else None,
        "candidates": {
            c.id: {"status": c.status, "x_native": ratio(c), "fidelity": c.fidelity, "size": c.size_bytes, "reason": c.reason[:160]}
            for c in result.candidates
        },
        "native_rows_per_s": base,
        "seconds": round(time.monotonic() - started, 1),
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "# `packager optimize` on the issue 23 anchors",
        "",
        "Rows/s relative to the native library at the same batch size, 1 thread, from each optimize run's final side-by-side",
        "bench run (fresh sandboxed process per artifact, warm-up, p50). The machine is shared (load average in the table);",
        "ratios are within one run, so load hits both sides. MiniLM (four batch x token settings) and OpenVINO: **pending**",
        "(OpenVINO arrives with the conversion-graph branch; MiniLM was not run in this session).",
        "",
        "| model | objective (batch) | chosen | chosen × native | fp32 ONNX × native | all candidates (× native) | optimize s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        others = ", ".join(
            f"{k} {v['x_native']}×" if v["x_native"] is not None else f"{k} {v['status']}" for k, v in r["candidates"].items()
        )
        lines.append(
            f"| {r['model']} | {r['objective']} ({r['batch_size']:,}) | {r['chosen']} | {r['chosen_x_native']} | {r['onnx_x_native']} | "
            f"{others} | {r['seconds']} | {r['load_before']}→{r['load_after']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="rf,lgbm,xgb,logistic")
    parser.add_argument("--objectives", default="throughput,latency")
    parser.add_argument("--trust", action="store_true", help="convert in-process (models built here): faster under load")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        work = Path(tmp)
        models = build(work)
        for name in args.only.split(","):
            model, formats, budget = models[name]
            data = work / ("cancer.parquet" if name == "logistic" else "rows.parquet")
            for objective in args.objectives.split(","):
                if name == "logistic" and objective == "throughput":
                    continue
                rows.append(run(name, model, formats, budget, data, objective, work / f"out-{name}-{objective}", args.trust))
                (RESULTS / "optimize.json").write_text(json.dumps(rows, indent=2) + "\n")
                (RESULTS / "optimize.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
