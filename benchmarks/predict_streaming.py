"""`packager predict` against a bare onnxruntime loop, and on an input far larger than memory.

1. Overhead: the same Parquet input, batch 1024, single thread: a hand-written loop (pyarrow
   batches -> numpy -> InferenceSession.run -> pyarrow Parquet writer) against `predict_file`,
   alternated 5 times in one run; the median ratio is the overhead (target <= 1.05).
2. Streaming: a generated Parquet file of about 5 GB through `packager predict` in a child
   process; its peak RSS (VmHWM read by a watcher) must stay under 1 GB.
3. CSV against Parquet: the same 2 M rows as CSV (about 400 MB) and as Parquet, each through
   `packager predict`; the CSV path's peak RSS must be within 50 MB of the Parquet path's.

    python benchmarks/predict_streaming.py [--gigabytes 5] [--only csv]   # writes benchmarks/results/predict_streaming.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "tmp" / "predict"
FEATURES = 20


def build_model(work: Path) -> Path:
    """A scaler + logistic regression pipeline (cheap per row: the loop's own cost shows) as an ONNX package."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import convert

    X, y = make_classification(5000, FEATURES, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X.astype(np.float32), y)
    return convert(model, to="onnx", sample=X[:64].astype(np.float32), out=work / "package", overwrite=True).path


def write_parquet(path: Path, rows: int, row_group: int = 1 << 20) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([(f"f{i}", pa.float32()) for i in range(FEATURES)])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            block = rng.standard_normal((n, FEATURES), dtype=np.float32)
            writer.write_table(pa.table({f"f{i}": block[:, i] for i in range(FEATURES)}, schema=schema))


def bare_loop(model: Path, data: Path, out: Path, batch: int) -> float:
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    writer = None
    for record in pq.ParquetFile(data, pre_buffer=False).iter_batches(batch_size=batch):  # the same reader settings as predict
        X = np.column_stack([c.to_numpy() for c in record.columns]).astype(np.float32, copy=False)
        label, proba = session.run(None, {name: X})
        table = pa.table({"label": label, **{f"probabilities_{j}": proba[:, j] for j in range(proba.shape[1])}})
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    writer.close()
    return time.perf_counter() - started


def packager_predict(package: Path, data: Path, out: Path, batch: int) -> float:
    from packager.inference import load_predictor, predict_file, resolve

    started = time.perf_counter()
    predictor = load_predictor(resolve(package), threads=1)
    predict_file(predictor, data, out, batch_size=batch, overwrite=True)
    return time.perf_counter() - started


def overhead(package: Path, work: Path, rows: int = 2_000_000, batch: int = 1024, rounds: int = 7) -> dict:
    data = work / "overhead.parquet"
    write_parquet(data, rows, row_group=128 * 1024)
    model = package / "model.onnx"
    bare, ours = [], []
    for _ in range(rounds):  # alternated, so drift hits both equally
        bare.append(bare_loop(model, data, work / "bare.parquet", batch))
        ours.append(packager_predict(package, data, work / "ours.parquet", batch))
    ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    best = min(ours) / min(bare)
    return {"rows": rows, "batch": batch, "bare_seconds": bare, "predict_seconds": ours, "median_ratio": round(ratio, 4),
            "overhead_percent": round((ratio - 1) * 100, 2), "best_of_each_ratio": round(best, 4), "target_percent": 5.0}


def streaming(package: Path, work: Path, gigabytes: float) -> dict:
    rows = int(gigabytes * 1e9 / (FEATURES * 4))
    data = work / "big.parquet"
    started = time.perf_counter()
    write_parquet(data, rows)
    generated = time.perf_counter() - started
    out = work / "big-out.parquet"
    summary, peak_kb, elapsed = _predict_in_child(package, data, out, batch=16384)
    result = {
        "input_bytes": data.stat().st_size,
        "rows": summary["rows"],
        "generate_seconds": round(generated, 1),
        "predict_seconds": round(elapsed, 1),
        "rows_per_second": round(summary["rows"] / elapsed),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "target_mb": 1024,
    }
    data.unlink()
    out.unlink()
    return result


def csv_against_parquet(package: Path, work: Path, rows: int = 2_000_000) -> dict:
    """The same rows as CSV and as Parquet through `packager predict` (batch 1024): peak RSS side by side."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    parquet, csv = work / "same.parquet", work / "same.csv"
    write_parquet(parquet, rows, row_group=1 << 17)
    pcsv.write_csv(pq.read_table(parquet), csv)
    result: dict = {"rows": rows}
    for data in (parquet, csv):
        summary, peak_kb, elapsed = _predict_in_child(package, data, work / "same-out.parquet", batch=1024)
        result[data.suffix.lstrip(".")] = {
            "input_bytes": data.stat().st_size,
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "predict_seconds": round(elapsed, 2),
        }
        data.unlink()
    result["csv_minus_parquet_mb"] = round(result["csv"]["peak_rss_mb"] - result["parquet"]["peak_rss_mb"], 1)
    result["target_mb"] = 50
    return result


def _predict_in_child(package: Path, data: Path, out: Path, batch: int) -> tuple[dict, int, float]:
    """Run `packager predict --json` in a child process; its summary, peak RSS (KB, VmHWM) and wall time."""
    command = [
        sys.executable,
        "-m",
        "packager.cli",
        "predict",
        str(package),
        str(data),
        "-o",
        str(out),
        "--force",
        "--batch-size",
        str(batch),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, _hwm_kb(child.pid))
        time.sleep(0.05)
    stdout, stderr = child.communicate()
    if child.returncode:
        raise SystemExit(f"predict failed: {stderr.decode()[-2000:]}")
    out.unlink(missing_ok=True)
    return json.loads(stdout), peak_kb, time.perf_counter() - started


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--only", choices=["csv"], help="Rerun one part, keeping the other figures on disk.")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    package = build_model(WORK)
    from packager.bench import describe_machine

    if args.only:
        result = json.loads((RESULTS / "predict_streaming.json").read_text())
        result["csv_against_parquet"] = csv_against_parquet(package, WORK)
    else:
        result = {
            "machine": describe_machine(1),
            "overhead": overhead(package, WORK),
            "streaming": streaming(package, WORK, args.gigabytes),
            "csv_against_parquet": csv_against_parquet(package, WORK),
        }
    (RESULTS / "predict_streaming.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
