"""What the sandbox adds per command: `packager inspect` and `packager convert --to onnx` of a small
scikit-learn pickle, sandboxed (default) and with --trust (unconfined), interleaved in one run so both
see the same machine load. Target: at most 0.3 s added to a conversion.

    python benchmarks/sandbox_cost.py [RUNS]     # writes benchmarks/results/sandbox_cost.json
"""
from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ADDED_SECONDS = 0.3


def _model(folder: Path) -> Path:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    path = folder / "cancer.pkl"
    path.write_bytes(pickle.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)))
    return path


def _time(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def _spawn_cost(runs: int) -> dict:
    """The fixed price of one confined child, apart from the work: bwrap around `true`, and the child's
    Python start with packager imported (what every sandboxed call pays before loading the model)."""
    from packager import sandbox

    with sandbox.workspace() as ws:
        wrap = sandbox.command(sandbox.bwrap_path(), ws, [], 0)
        wrap = wrap[:wrap.index("--")]
        child = [sys.executable, "-c", "import packager.confined, packager._sandbox_child"]
        commands = {"bwrap true": [*wrap, "--", "/bin/true"], "true": ["/bin/true"],
                    "bwrap python -c 'import packager.confined'": [*wrap, "--", *child], "python -c 'import packager.confined'": child}
        timings: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(runs):
            for label, cmd in commands.items():
                started = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                timings[label].append(time.perf_counter() - started)
    return {label: round(statistics.median(values), 4) for label, values in timings.items()}


def main(runs: int = 10) -> dict:
    work = Path(tempfile.mkdtemp(prefix="sandbox-cost-"))
    try:
        model = _model(work)
        commands = {
            "inspect": lambda trust, i: ["inspect", str(model), "--json", *trust],
            "convert --to onnx": lambda trust, i: ["convert", str(model), "--to", "onnx", "-o", str(work / f"out-{len(trust)}-{i}"),
                                                   "--json", *trust],
        }
        samples = {(name, mode): [] for name in commands for mode in ("sandbox", "trust")}
        for build in commands.values():  # one warm-up each (file cache, .pyc)
            _time(build([], -1), work), _time(build(["--trust"], -2), work)
        for i in range(runs):
            for name, build in commands.items():
                samples[(name, "sandbox")].append(_time(build([], i), work))
                samples[(name, "trust")].append(_time(build(["--trust"], i), work))
        results = []
        for name in commands:
            sandboxed, trusted = (statistics.median(samples[(name, m)]) for m in ("sandbox", "trust"))
            results.append({"command": f"packager {name}", "runs": runs, "sandbox_median_s": round(sandboxed, 3),
                            "trust_median_s": round(trusted, 3),
                            "added_s": round(sandboxed - trusted, 3), "sandbox_min_s": round(min(samples[(name, 'sandbox')]), 3),
                            "trust_min_s": round(min(samples[(name, 'trust')]), 3)})
        return {"target_added_s": TARGET_ADDED_SECONDS, "results": results, "spawn_median_s": _spawn_cost(runs),
                "model": "StandardScaler+LogisticRegression on breast_cancer (pickle)",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "bwrap": shutil.which("bwrap")},
                "note": ("interleaved runs on a shared 2-core machine (load average ~7 during the run); medians. The sandboxed command "
                         "can be faster than --trust: its child ends with os._exit after answering, skipping the interpreter teardown "
                         "of the frameworks it imported, which the unconfined CLI process pays")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    report = main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    out = Path(__file__).parent / "results" / "sandbox_cost.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"results": report["results"], "spawn": report["spawn_median_s"]}, indent=2))
