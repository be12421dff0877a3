"""The standard format benchmark: a scikit-learn forest and a preprocessing pipeline, a Keras MLP, a
torch CNN and a small transformer encoder, each converted to every format it reaches, then
`packager bench` on each set with the source model in its native framework as the baseline.

    python benchmarks/format_bench.py [--threads 1,2] [--quick]

Writes benchmarks/results/formats/<model>-<threads>t/bench.{json,md,png} and a summary,
benchmarks/results/formats.md, with the machine's description.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "tmp" / "formats"


def build_models(work: Path) -> list[dict]:
    """Each entry: name, source file (the baseline), data file, extra convert kwargs, batch sizes."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fixtures import keras_models, torch_models

    work.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(20000, 20, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    columns = [f"f{i}" for i in range(20)]
    pd.DataFrame(X[:16384], columns=columns).to_parquet(work / "tabular.parquet")
    np.save(work / "tabular.npy", X[:16384])
    models = []
    for name, estimator in (("forest", RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)),
                            ("scaler_logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)))):
        import pickle

        estimator.fit(X, y)
        (work / f"{name}.pkl").write_bytes(pickle.dumps(estimator, protocol=5))
        models.append({"name": name, "source": work / f"{name}.pkl", "data": work / "tabular.parquet", "sample": work / "tabular.npy",
                       "sizes": (1, 32, 1024, 16384), "quantize": {}})
    # gradient-boosted trees from their native files (the baseline is the library's own predict), ONNX beside them
    import lightgbm as lgb
    import xgboost as xgb

    booster = xgb.XGBClassifier(n_estimators=100, max_depth=6, random_state=0).fit(X, y)
    booster.save_model(work / "xgboost.json")
    lgb.LGBMClassifier(n_estimators=100, num_leaves=31, random_state=0, verbose=-1).fit(X, y).booster_.save_model(work / "lightgbm.txt")
    for name, source in (("xgboost", work / "xgboost.json"), ("lightgbm", work / "lightgbm.txt")):
        models.append({"name": name, "source": source, "data": work / "tabular.parquet", "sample": work / "tabular.npy",
                       "sizes": (1, 1024, 16384), "quantize": {}, "targets": ("onnx",)})
    keras_model, _ = keras_models.mlp()
    keras_model.save(work / "keras_mlp.keras")
    models.append({"name": "keras_mlp", "source": work / "keras_mlp.keras", "data": work / "tabular.npy", "sample": work / "tabular.npy",
                   "sizes": (1, 32, 1024, 16384), "quantize": {"onnx": "dynamic", "tflite": "dynamic"}})
    import torch

    cnn, _ = torch_models.cnn()
    torch.save(cnn.state_dict(), work / "torch_cnn.pth")
    np.save(work / "images.npy", np.random.default_rng(0).standard_normal((4096, 3, 16, 16)).astype(np.float32))
    models.append(
        {
            "name": "torch_cnn",
            "source": work / "torch_cnn.pth",
            "model_class": "fixtures.torch_models:cnn_module",
            "data": work / "images.npy",
            "sample": work / "images.npy",
            "sizes": (1, 32, 1024, 4096),
            "quantize": {"onnx": "dynamic", "torchscript": "static"},
        }
    )
    encoder, ids = torch_models.transformer_encoder()
    torch.save(encoder.state_dict(), work / "transformer.pth")
    np.save(work / "ids.npy", np.concatenate([ids] * 4)[:64])
    models.append(
        {
            "name": "transformer",
            "source": work / "transformer.pth",
            "model_class": "fixtures.torch_models:transformer_module",
            "data": work / "ids.npy",
            "sample": work / "ids.npy",
            "sizes": (1, 8, 32),
            "quantize": {"onnx": "dynamic", "torchscript": "dynamic"},
            "targets": ("onnx", "torchscript", "pt2"),
        }
    )
    return models


def convert_all(entry: dict, work: Path) -> list[Path]:
    """Every target the source reaches (and the quantized variants named), as packages; refusals are printed."""
    from packager.conversion import convert, load_source
    from packager.errors import PackagerError
    from packager.plugins import default_registry

    registry = default_registry()
    source = load_source(entry["source"], model_class=entry.get("model_class"))
    targets = entry.get("targets") or [
        t for t in registry.targets_of(source.framework) if registry.runtime(t) and registry.runtime(t).executes
    ]
    packages = []
    for target in targets:
        for mode in (None, *([entry["quantize"][target]] if target in entry["quantize"] else [])):
            out = work / entry["name"] / (target + (f"-{mode}" if mode else ""))
            try:
                kwargs = {"calibration": entry["sample"]} if mode == "static" else {}
                package = convert(
                    entry["source"],
                    to=target,
                    quantize=mode,
                    sample=entry["sample"],
                    model_class=entry.get("model_class"),
                    out=out,
                    overwrite=True,
                    **kwargs,
                )
                if package.manifest.validation["status"] == "passed":  # structure-checked only: nothing to run
                    packages.append(out)
            except PackagerError as exc:
                print(f"  {entry['name']} -> {target}{'+' + mode if mode else ''}: {exc.one_line()}")
    return packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--quick", action="store_true", help="shorter measurements (a smoke run)")
    parser.add_argument("--only", help="comma-separated model names")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from packager.bench import BenchSettings, run_bench, write_reports

    shutil.rmtree(WORK, ignore_errors=True)
    models = build_models(WORK)
    order = [m["name"] for m in models]
    if args.only:
        models = [m for m in models if m["name"] in args.only.split(",")]
    for entry in models:
        print(f"converting {entry['name']} ...", flush=True)
        packages = convert_all(entry, WORK)
        for threads in (int(t) for t in args.threads.split(",")):
            print(f"benchmarking {entry['name']} with {threads} thread(s) ...", flush=True)
            settings = BenchSettings(batch_sizes=entry["sizes"], threads=threads, min_seconds=0.2 if args.quick else 1.0)
            report = run_bench(
                [str(p) for p in packages], entry["data"], settings, baseline=str(entry["source"]), model_class=entry.get("model_class")
            )
            out = RESULTS / "formats" / f"{entry['name']}-{threads}t"
            write_reports(report, out)
    write_summary(order)
    print(f"written {RESULTS / 'formats.md'}")


def write_summary(order: list[str]) -> None:
    """formats.md from every set's bench.md on disk, so `--only` refreshes some sets and keeps the others."""
    summary = ["# Format benchmark", ""]
    for name in order:
        for out in sorted((RESULTS / "formats").glob(f"{name}-*t"), key=lambda p: int(p.name.rsplit("-", 1)[1][:-1])):
            threads = out.name.rsplit("-", 1)[1][:-1]
            summary += [
                f"## {name}, {threads} thread(s)",
                "",
                (out / "bench.md").read_text(),
                f"![throughput](formats/{out.name}/bench.png)",
                "",
            ]
    (RESULTS / "formats.md").write_text("\n".join(summary))


if __name__ == "__main__":
    main()
