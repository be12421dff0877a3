"""Registry benchmarks, measured side by side in one run:

1. push and pull of a 1 GB artifact against plain `cp` of the same file (and `sha256sum` for
   reference). Targets: push (hashing included) and pull (digest verified) within 1.5x of cp.
2. `list` and `search` latency on a catalog of 100,000 versions (1,000 models x 100 versions).
   Target: a search by tag and metric under 50 ms.

    python benchmarks/registry_bench.py [--size-mb 1024] [--versions 100000] [--runs 3]

Writes benchmarks/results/registry.json and registry.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def make_package(folder: Path, size_mb: int) -> Path:
    package = folder / "package"
    package.mkdir()
    with open(package / "model.bin", "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    manifest = {
        "format": "onnx",
        "model_file": "model.bin",
        "quantization": {"mode": None, "applied": False},
        "validation": {"status": "passed"},
        "versions": {},
    }
    (package / "manifest.json").write_text(json.dumps(manifest))
    return package


def transfer(size_mb: int, runs: int, work: Path) -> dict:
    from packager.registry.api import Registry

    package = make_package(work, size_mb)
    big = package / "model.bin"
    times: dict[str, list[float]] = {"cp": [], "cp+sync": [], "sha256sum": [], "push": [], "pull": []}
    subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # same warm page cache for everyone
    for run in range(runs):
        target = work / f"cp-{run}.bin"
        times["cp"].append(_timed(lambda target=target: subprocess.run(["cp", str(big), str(target)], check=True)))
        target.unlink()
        times["cp+sync"].append(_timed(lambda target=target: subprocess.run(f"cp {big} {target} && sync {target}", shell=True, check=True)))
        target.unlink()
        times["sha256sum"].append(_timed(lambda: subprocess.run(["sha256sum", str(big)], check=True, capture_output=True)))
        store = work / f"store-{run}"
        registry = Registry(f"sqlite:///{store / 'catalog.db'}", str(store / "objects"))
        registry.push(package, "warmup-lineage")  # first push of a process also runs pip freeze: keep it out
        registry.delete("warmup-lineage@1"), registry.gc()
        times["push"].append(_timed(lambda registry=registry: registry.push(package, "big")))
        out = work / f"pulled-{run}"
        times["pull"].append(_timed(lambda registry=registry, out=out: registry.pull("big@1", out)))
        shutil.rmtree(out)
        shutil.rmtree(store)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "size_mb": size_mb, "runs": runs, "seconds": times, "median_s": median,
        "push_over_cp": median["push"] / median["cp"], "pull_over_cp": median["pull"] / median["cp"], "target_ratio": 1.5,
        "push_over_cp_sync": median["push"] / median["cp+sync"],
        "note": "push fsyncs every blob (durability), cp does not: cp+sync is the like-for-like baseline",
    }


def populate(registry, versions: int, per_model: int = 100) -> None:
    """Bulk-insert a realistic catalog directly (pushing 100,000 packages would measure disks, not queries)."""
    import datetime as dt

    from packager.registry import schema as t

    rng = random.Random(0)
    now = dt.datetime.now(dt.timezone.utc)
    teams = ["fraud", "growth", "risk", "search", "ads"]
    with registry.engine.begin() as conn:
        for m in range(versions // per_model):
            model_id = conn.execute(t.models.insert().values(name=f"model-{m:04d}", created=now).returning(t.models.c.id)).scalar_one()
            rows, metrics, tags, params = [], [], [], []
            for v in range(1, per_model + 1):
                vid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                rows.append(
                    {
                        "id": vid,
                        "model_id": model_id,
                        "version": v,
                        "created": now,
                        "digest": f"{rng.getrandbits(256):064x}",
                        "format": rng.choice(["onnx", "pmml", "skops"]),
                        "quantization": rng.choice([None, "dynamic"]),
                        "validation": "passed",
                        "size": rng.randint(1000, 10**8),
                        "description": None,
                        "manifest": "{}",
                        "lineage": "{}",
                    }
                )
                metrics += [
                    {"version_id": vid, "key": "accuracy", "value": rng.random()},
                    {"version_id": vid, "key": "loss", "value": rng.random()},
                ]
                tags.append({"version_id": vid, "key": "team", "value": rng.choice(teams)})
                params.append({"version_id": vid, "key": "depth", "value": str(rng.randint(2, 12))})
            conn.execute(t.versions.insert(), rows)
            conn.execute(t.metrics.insert(), metrics)
            conn.execute(t.tags.insert(), tags)
            conn.execute(t.params.insert(), params)
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def queries(versions: int, work: Path, repeats: int = 20) -> dict:
    from packager.registry.api import Registry

    registry = Registry(f"sqlite:///{work / 'catalog.db'}", str(work / "objects"))
    build = _timed(lambda: populate(registry, versions))
    cases = {
        "search tag+metric (top 100)": lambda: registry.search('tag.team = "fraud" and metric.accuracy > 0.9'),
        "search tag+metric+format (top 100)": lambda: registry.search('metric.accuracy > 0.9 and tag.team = "fraud" and format = "onnx"'),
        "list one model (100 versions)": lambda: registry.list(f"model-{versions // 200:04d}"),
        "list all models (latest of 1,000)": lambda: registry.list(),
        "get name@version": lambda: registry.get(f"model-{versions // 200:04d}@42"),
    }
    latency = {}
    for name, call in cases.items():
        call()
        samples = sorted(_timed(call) * 1000 for _ in range(repeats))
        latency[name] = {
            "median_ms": statistics.median(samples),
            "p95_ms": samples[int(0.95 * (repeats - 1))],
            "rows": len(call()) if name != "get name@version" else 1,
        }
    return {"versions": versions, "populate_s": build, "latency": latency, "target_ms": 50}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    transfer_ = result["transfer"]
    names = ["cp", "cp+sync", "sha256sum", "push", "pull"]
    values = [transfer_["median_s"][n] for n in names]
    left.bar(names, values, color=["#888", "#999", "#aaa", "#2a7", "#27a"])
    left.axhline(transfer_["median_s"]["cp"] * 1.5, color="red", linestyle="--", label="1.5 x cp (target)")
    left.set_ylabel("seconds (median)")
    left.set_title(f"{transfer_['size_mb']} MB artifact")
    left.legend()
    lat = result["queries"]["latency"]
    right.barh(list(lat), [v["median_ms"] for v in lat.values()], color="#27a")
    right.axvline(50, color="red", linestyle="--", label="50 ms (target for search)")
    right.set_xlabel("ms (median)")
    right.set_title(f"catalog of {result['queries']['versions']:,} versions (SQLite)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("PACKAGER_BENCH_TMP")) as work:
        work = Path(work)
        (work / "t").mkdir()
        (work / "q").mkdir()
        result = {
            "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "transfer": transfer(args.size_mb, args.runs, work / "t"),
            "queries": queries(args.versions, work / "q"),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "registry.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "registry.png")
    t = result["transfer"]
    print(
        f"{t['size_mb']} MB: cp {t['median_s']['cp']:.2f}s  sha256sum {t['median_s']['sha256sum']:.2f}s  "
        f"cp+sync {t['median_s']['cp+sync']:.2f}s  push {t['median_s']['push']:.2f}s "
        f"({t['push_over_cp']:.2f}x cp, {t['push_over_cp_sync']:.2f}x cp+sync)"
        f"  pull {t['median_s']['pull']:.2f}s ({t['pull_over_cp']:.2f}x cp)"
    )
    for name, value in result["queries"]["latency"].items():
        print(f"{name:<38} median {value['median_ms']:7.1f} ms  p95 {value['p95_ms']:7.1f} ms  rows {value['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
