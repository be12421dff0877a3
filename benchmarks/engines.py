"""`packager predict` on one input through the three engines side by side: --engine local, dask and spark.

The model is real: scikit-learn's breast_cancer dataset (569 rows, 30 named features), a StandardScaler +
LogisticRegression pipeline converted to an ONNX package with packager's Python API. The input is 1,000,000 rows
resampled from the dataset with small noise (1% of each feature's spread), written as one Parquet file into a temp
dir (removed afterwards, never committed).

Each engine runs as the CLI a user would type (`packager predict PKG rows.parquet -o OUT --engine E --json`, default
batch size, the package's static checks on, the local engine in its sandbox), in a child process watched every
0.1 s: wall time from start to exit (so Spark's JVM and Dask's cluster start-up count), the driver's peak RSS (its
VmHWM) and the peak summed RSS of its whole process tree (sandbox child, Dask workers, Spark's JVM and Python
workers), sampled, so a short peak can be missed. Then the three outputs are compared row by row with the local
engine's: labels identical, probabilities' max abs difference. The load average is recorded before and after each
run (the machine is shared).

    python benchmarks/engines.py [--rows 1000000]   # writes benchmarks/results/engines.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
ENGINES = {"local": [], "dask": ["--workers", "2"], "spark": ["--master", "local[2]"]}


def build_package(work: Path) -> tuple[Path, object]:
    """breast_cancer as a DataFrame (named columns, so every engine matches them by name) -> scaler + LR -> ONNX package."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import convert

    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(data.data, data.target)
    sample = work / "sample.parquet"
    data.data.iloc[:64].to_parquet(sample)
    package = convert(model, to="onnx", sample=sample, out=work / "package", overwrite=True)
    return package.path, data.data


def write_rows(frame, path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows drawn from ``frame`` with replacement, plus Gaussian noise of 1% of each column's standard deviation."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    values, spread = frame.to_numpy(), frame.std().to_numpy()
    schema = pa.schema([(name, pa.float64()) for name in frame.columns])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 1 << 17):
            n = min(1 << 17, rows - start)
            block = values[rng.integers(0, len(values), n)] + rng.normal(0, 1, (n, values.shape[1])) * spread * 0.01
            writer.write_table(pa.table({name: block[:, i] for i, name in enumerate(frame.columns)}, schema=schema))


def run_engine(engine: str, package: Path, data: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "packager.cli", "predict", str(package), str(data), "-o", str(out), "--engine", engine,
               *ENGINES[engine], "--json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    load_before = os.getloadavg()
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    watch = Watcher(child.pid)
    watch.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    watch.stop()
    if child.returncode:
        raise SystemExit(f"--engine {engine} failed ({child.returncode}): {stderr.decode()[-3000:]}")
    summary = json.loads(stdout)
    return {"engine": engine, "command": " ".join(["packager", *command[3:]]), "wall_seconds": round(wall, 2),
            "engine_seconds": round(summary.get("seconds", 0.0), 2), "rows": summary["rows"],
            "rows_per_second": round(summary["rows"] / wall), "driver_peak_rss_mb": round(watch.driver_hwm_kb / 1024, 1),
            "tree_peak_rss_mb": round(watch.tree_peak_kb / 1024, 1), "tree_processes_max": watch.processes,
            "partitions": summary.get("partitions"), "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


class Watcher(threading.Thread):
    """Samples a process tree every 0.1 s: the root's VmHWM and the tree's summed VmRSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.driver_hwm_kb = self.tree_peak_kb = self.processes = 0

    def run(self) -> None:
        while not self.done.is_set():
            tree = _tree(self.pid)
            self.driver_hwm_kb = max(self.driver_hwm_kb, _status_kb(self.pid, "VmHWM"))
            self.tree_peak_kb = max(self.tree_peak_kb, sum(_status_kb(p, "VmRSS") for p in tree))
            self.processes = max(self.processes, len(tree))
            self.done.wait(0.1)

    def stop(self) -> None:
        self.done.set()
        self.join()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def compare(outputs: dict[str, Path]) -> dict:
    """Every engine's output against the local engine's, row by row."""
    import numpy as np
    import pandas as pd

    frames = {engine: pd.read_parquet(path) for engine, path in outputs.items()}
    reference = frames["local"]
    probability = [c for c in reference.columns if c.startswith("probabilities")]
    result = {}
    for engine, frame in frames.items():
        if engine == "local":
            continue
        same_shape = list(frame.columns) == list(reference.columns) and len(frame) == len(reference)
        labels = frame["label"].to_numpy() == reference["label"].to_numpy() if same_shape else np.array([False])
        diff = (np.abs(frame[probability].to_numpy(np.float64) - reference[probability].to_numpy(np.float64)) if same_shape
                else np.array([np.inf]))
        result[engine] = {"rows": len(frame), "columns_equal": same_shape, "labels_identical": bool(labels.all()),
                          "label_mismatches": int((~labels).sum()), "probabilities_max_abs_diff": float(diff.max()),
                          "probabilities_identical": bool((diff == 0).all())}
    return result


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# `packager predict`: local, Dask and Spark engines on one input",
        "",
        (f"Model: {report['model']}. Input: {report['rows']:,} rows × {report['features']} columns, one Parquet file "
        f"({report['input_mb']} MB), resampled from breast_cancer with 1% noise. Default batch size, each engine run once "
        "as the CLI in a child process, in the order below."),
        "",
        ("| engine | wall s | rows/s (wall) | engine-reported s | partitions | driver peak RSS MB | process-tree peak RSS MB (sampled) "
        "| processes | load avg before → after (1 min) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in report["runs"]:
        lines.append(f"| {run['engine']} | {run['wall_seconds']} | {run['rows_per_second']:,} | {run['engine_seconds']} | "
                     f"{run['partitions'] or '–'} | {run['driver_peak_rss_mb']} | {run['tree_peak_rss_mb']} | "
                     f"{run['tree_processes_max']} | "
                     f"{run['loadavg_before'][0]} → {run['loadavg_after'][0]} |")
    lines += ["", "Equality against `--engine local`, row by row:", "",
              "| engine | rows | labels identical | label mismatches | probabilities max abs diff |", "|---|---:|---|---:|---:|"]
    for engine, eq in report["equality"].items():
        lines.append(f"| {engine} | {eq['rows']:,} | {eq['labels_identical']} | {eq['label_mismatches']} | "
                     f"{eq['probabilities_max_abs_diff']:.3g} |")
    lines += ["", (f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, Python {machine['python']}; "
              f"{', '.join(f'{k} {v}' for k, v in report['versions'].items())}."),
              (f"Load average (1, 5, 15 min) before the runs {report['loadavg_start']}, after {report['loadavg_end']}: "
              f"{report['load_note']}"), "", "Reading the figures:", "",
              ("- wall time is what a user waits for: Spark's includes starting the JVM (10-13 s in this machine's test runs) and the "
              "sort that restores the input's row order; Dask's includes starting a 2-worker LocalCluster;"),
              ("- `partitions` is how the engine cut the input: Dask kept one Parquet file as one partition (one worker scores), "
              "Spark cut it into splits of at most 128 MB;"),
              ("- the local engine runs the model in its sandbox child (counted in the process tree), Dask and Spark in their "
              "unconfined workers (a package, static checks on);"),
              ("- the process-tree figure sums VmRSS over every process sampled at the same instant (a page shared by several "
              "processes counts in each), every 0.1 s."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--render", action="store_true", help="Rewrite engines.md from engines.json, running nothing.")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "engines.md").write_text(markdown(json.loads((RESULTS / "engines.json").read_text())))
        return
    from packager.bench import describe_machine
    from packager.deps import version_of

    start_load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="packager-engines-"))
    try:
        package, frame = build_package(work)
        data = work / "rows.parquet"
        write_rows(frame, data, args.rows)
        outputs = {"local": work / "local.parquet", "dask": work / "dask", "spark": work / "spark"}
        runs = []
        for engine, out in outputs.items():
            runs.append(run_engine(engine, package, data, out))
            print(json.dumps(runs[-1]), flush=True)
        equality = compare(outputs)
        input_mb = round(data.stat().st_size / 1e6, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    end_load = os.getloadavg()
    busy = max(start_load[0], end_load[0], *(r["loadavg_before"][0] for r in runs), *(r["loadavg_after"][0] for r in runs))
    note = (f"the machine was shared (1-min load up to {busy:.1f} on {os.cpu_count()} cores): figures are slower than on an idle machine"
            if busy > (os.cpu_count() or 1) * 0.5 else "the machine was mostly idle")
    report = {"model": "breast_cancer, StandardScaler + LogisticRegression, ONNX package (packager convert --to onnx)",
              "rows": args.rows, "features": frame.shape[1], "input_mb": input_mb, "runs": runs, "equality": equality,
              "machine": describe_machine(threads=0),
              "versions": {d: version_of(d) for d in ("pyspark", "dask", "distributed", "onnxruntime", "pyarrow")},
              "loadavg_start": [round(x, 2) for x in start_load], "loadavg_end": [round(x, 2) for x in end_load], "load_note": note}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "engines.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
