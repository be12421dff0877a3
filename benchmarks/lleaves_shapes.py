"""lleaves against native LightGBM by the model's shape: does issue 23's "LightGBM 500 trees >= 10x native at 16,384 rows"
depend on which 500-tree model, and which shapes reach it?

Every model has 500 trees. Shapes (``SHAPES``): features 20 / 30 / 64 / 200, num_leaves 31 (LightGBM's default) / 127
(and 7 / 10 / 15 / 63, and max_depth=3, on the 20-feature data, to see the ratio against tree size),
binary classifiers and one regressor, on scikit-learn's bundled data (breast_cancer with LightGBM's defaults but 500
trees, digits as even/odd) and on ``make_classification`` (``syn20`` is benchmarks/optimize.py's model: 40,000 rows,
12 informative, trained on the first 20,000). Bundled sets are small (569 / 1,797 rows): their 16,384 timed rows are
their own rows drawn with replacement.

Per shape, in one process, 1 thread (OMP_NUM_THREADS=1 and ``n_jobs=1`` for LightGBM, ``n_jobs=1`` for lleaves),
16,384 float64 rows, each callable once to warm up then 5 interleaved rounds, medians: native ``predict_proba`` (the
regressor: ``predict``) with all 500 trees and with ``num_iteration=1`` (native's fixed per-row cost: its row
conversion and per-call work, what a compiled model does not pay), lleaves on the 500-tree model and on the same
model's first tree alone (lleaves' own fixed cost). The max abs difference is lleaves against native on the same rows.
The tree shapes that decide the per-tree cost come from ``dump_model``: leaves per tree and the mean depth a row goes
down (leaf depths weighted by the training rows that reached each leaf).

lleaves compiles take 20-750 s each on this machine (more with 127 leaves): ``build`` trains and compiles into a cache
directory (object files written beside and renamed into place, so a killed build leaves nothing half-written), and
``measure`` loads them from there.

    python benchmarks/lleaves_shapes.py build cancer syn20 ...     # train + compile (cache: --cache DIR)
    python benchmarks/lleaves_shapes.py measure cancer syn20 ...   # writes benchmarks/results/lleaves_shapes.json
    python benchmarks/lleaves_shapes.py build|measure syn20_l7 --without avx512|vectorizers   # what vectors are worth
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before lightgbm loads: its OpenMP pool is sized then

import argparse
import json
import pickle
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.optimize import interleaved_medians  # noqa: E402  (the same side-by-side medians as the optimize anchors)

RESULTS = ROOT / "benchmarks" / "results" / "lleaves_shapes.json"
ROWS = 16_384
TREES = 500

# name -> (data, features, num_leaves, kind); num_leaves None keeps LightGBM's default (31)
SHAPES: dict[str, tuple[str, int, int | None, str]] = {
    "cancer": ("breast_cancer", 30, None, "binary"),
    "syn20": ("make_classification", 20, 31, "binary"),
    "digits": ("digits", 64, 31, "binary"),
    "reg20": ("make_regression", 20, 31, "regression"),
    "syn64": ("make_classification", 64, 31, "binary"),
    "syn200": ("make_classification", 200, 31, "binary"),
    "syn20_l7": ("make_classification", 20, 7, "binary"),
    "syn20_d3": ("make_classification", 20, 8, "binary"),  # max_depth=3 (below): at most 8 leaves
    "syn20_l10": ("make_classification", 20, 10, "binary"),
    "syn20_l15": ("make_classification", 20, 15, "binary"),
    "syn20_l63": ("make_classification", 20, 63, "binary"),
    "syn20_l127": ("make_classification", 20, 127, "binary"),
    "syn64_l127": ("make_classification", 64, 127, "binary"),
    "syn200_l127": ("make_classification", 200, 127, "binary"),
}


def data(name: str):
    """(training X, training y, the 16,384 timed rows as contiguous float64)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification, make_regression

    source, features, _, _ = SHAPES[name]
    rng = np.random.default_rng(0)
    if source in ("breast_cancer", "digits"):
        X, y = (load_breast_cancer if source == "breast_cancer" else load_digits)(return_X_y=True)
        if source == "digits":
            y = y % 2  # even / odd: a binary task on all 64 pixels
        rows = X[rng.integers(0, len(X), ROWS)]
        return X, y, np.ascontiguousarray(rows, dtype=np.float64)
    if source == "make_regression":
        X, y = make_regression(40_000, features, n_informative=12, noise=10.0, random_state=0)
    else:  # 12 informative of 20 (optimize.py's model); half of the features for the wider ones
        X, y = make_classification(40_000, features, n_informative=12 if features == 20 else features // 2, random_state=0)
    return X[:20_000], y[:20_000], np.ascontiguousarray(X[20_000 : 20_000 + ROWS], dtype=np.float64)


def train(name: str, cache: Path) -> Path:
    import lightgbm as lgb

    path = cache / f"{name}.txt"
    if path.is_file():
        return path
    X, y, _ = data(name)
    _, _, leaves, kind = SHAPES[name]
    params: dict = {"n_estimators": TREES, "verbose": -1, "n_jobs": 1}
    if leaves is not None:
        params["num_leaves"] = leaves
    if name.endswith("_d3"):
        params["max_depth"] = 3
    model = (lgb.LGBMRegressor if kind == "regression" else lgb.LGBMClassifier)(**params).fit(X, y)
    model.booster_.save_model(str(cache / f"{name}_1tree.txt"), num_iteration=1)
    (cache / f"{name}.pkl").write_bytes(pickle.dumps(model))  # the estimator: what bench's baseline calls
    model.booster_.save_model(str(path.with_suffix(".tmp")))
    path.with_suffix(".tmp").rename(path)
    return path


def without(vectors: str | None) -> str | None:
    """lleaves' ``target_cpu_features`` for the host less AVX-512 (``avx512``: code generated for AVX2 at most); None
    keeps lleaves' default, the host's features. (The optimizer's cost model still sees the host CPU: packager's shim.)"""
    if vectors != "avx512":
        return None
    import llvmlite.binding as llvm

    flags = llvm.get_host_cpu_features().flatten().split(",")
    return ",".join("-" + f[1:] if f.startswith("+avx512") else f for f in flags)


class _NoVectorizers:
    """packager's optimizer pass for lleaves (converters/compiled_trees.py) with LLVM's loop and SLP vectorizers off."""

    def run(self, module) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
            cpu=llvm.get_host_cpu_name(), reloc="pic", codemodel="large"
        )
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        options.loop_vectorization = options.slp_vectorization = False
        builder = llvm.create_pass_builder(machine, options)
        builder.getModulePassManager().run(module, builder)


def compiled(model_file: Path, vectors: str | None = None):
    """The lleaves model, compiled with its default flags (as packager's lleaves runtime does) or loaded from the cache;
    ``vectors``: compiled without that vector extension (``without``), a probe of what the vectorizer is worth."""
    import lleaves

    from converters.compiled_trees import _new_pass_manager_for_lleaves

    _new_pass_manager_for_lleaves()  # llvmlite 0.50 has no legacy pass manager: lleaves alone cannot compile here
    model = lleaves.Model(model_file=str(model_file))
    obj = model_file.with_suffix(f".no-{vectors}.o" if vectors else ".o")
    if obj.is_file():
        model.compile(cache=str(obj), target_cpu_features=without(vectors))
    else:
        from lleaves.compiler import tree_compiler

        staging = obj.with_suffix(".part")
        started = time.monotonic()
        usual = tree_compiler.llvm.ModulePassManager
        if vectors == "vectorizers":
            tree_compiler.llvm.ModulePassManager = _NoVectorizers
        try:
            model.compile(cache=str(staging), target_cpu_features=without(vectors))
        finally:
            tree_compiler.llvm.ModulePassManager = usual
        staging.rename(obj)
        print(f"  compiled {model_file.name} in {time.monotonic() - started:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return model


def shape_of(booster) -> dict:
    """Leaves per tree and the depth rows go down: leaf depths weighted by the training rows that reached each leaf."""
    leaves: list[int] = []
    weighted = count = 0.0
    deepest = 0

    def walk(node: dict, depth: int) -> int:
        nonlocal weighted, count, deepest
        if "leaf_index" in node or "leaf_value" in node and "split_index" not in node:
            weighted += depth * node.get("leaf_count", 0)
            count += node.get("leaf_count", 0)
            deepest = max(deepest, depth)
            return 1
        return walk(node["left_child"], depth + 1) + walk(node["right_child"], depth + 1)

    for tree in booster.dump_model()["tree_info"]:
        leaves.append(walk(tree["tree_structure"], 0))
    return {
        "trees": len(leaves),
        "mean_leaves": round(statistics.mean(leaves), 1),
        "mean_row_depth": round(weighted / count, 2) if count else None,
        "max_depth": deepest,
    }


def measure(name: str, cache: Path, rounds: int, vectors: str | None = None) -> dict:
    import numpy as np

    _, _, leaves, kind = SHAPES[name]
    model_file = train(name, cache)
    estimator = pickle.loads((cache / f"{name}.pkl").read_bytes()).set_params(n_jobs=1)
    booster = estimator.booster_
    _, _, rows = data(name)

    def native(num_iteration=None):
        if kind == "regression":
            return estimator.predict(rows, num_iteration=num_iteration)
        return estimator.predict_proba(rows, num_iteration=num_iteration)[:, 1]

    full, one = compiled(model_file, vectors), compiled(cache / f"{name}_1tree.txt", vectors)
    expected = native()
    diff = float(np.max(np.abs(full.predict(rows, n_jobs=1) - expected)))
    load_before = os.getloadavg()[0]
    med = interleaved_medians(
        {
            "native": native,
            "native_1tree": lambda: native(1),
            "lleaves": lambda: full.predict(rows, n_jobs=1),
            "lleaves_1tree": lambda: one.predict(rows, n_jobs=1),
        },
        rounds,
    )
    ms = {k: round(v * 1000, 2) for k, v in med.items()}
    result = {
        "shape": name,
        "data": SHAPES[name][0],
        "features": rows.shape[1],
        "num_leaves": leaves or 31,
        "kind": kind,
        "lleaves_without": vectors,
        **shape_of(booster),
        "ms": ms,
        "x_native": round(med["native"] / med["lleaves"], 2),
        "native_us_per_tree": round((med["native"] - med["native_1tree"]) / (TREES - 1) * 1e6, 1),
        "lleaves_us_per_tree": round((med["lleaves"] - med["lleaves_1tree"]) / (TREES - 1) * 1e6, 1),
        "native_fixed_share": round(med["native_1tree"] / med["native"], 3),
        "x_native_per_tree": round((med["native"] - med["native_1tree"]) / (med["lleaves"] - med["lleaves_1tree"]), 2),
        "max_abs_diff": diff,
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["build", "measure"])
    parser.add_argument("shapes", nargs="+", choices=sorted(SHAPES))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lleaves-shapes"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--without", choices=["avx512", "vectorizers"], help="compile lleaves without this vector extension")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.step == "build":
        for name in args.shapes:
            started = time.monotonic()
            model_file = train(name, args.cache)
            compiled(args.cache / f"{name}_1tree.txt", args.without)
            compiled(model_file, args.without)
            print(f"{name}: built in {time.monotonic() - started:.0f} s", flush=True)
        return
    found = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in args.shapes:
        key = f"{name} without {args.without}" if args.without else name
        found.setdefault(key, []).append(measure(name, args.cache, args.rounds, args.without))
        RESULTS.write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
