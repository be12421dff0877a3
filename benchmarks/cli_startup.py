"""Wall time of `packager --help` and `packager formats` (target: under 0.5 s each, every framework installed).

    python benchmarks/cli_startup.py [RUNS]     # writes benchmarks/results/cli_startup.json
"""
from __future__ import annotations

import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

COMMANDS = (["--help"], ["formats"])
FRAMEWORKS = ("scikit-learn", "torch", "tensorflow-cpu", "keras", "coremltools", "onnxruntime", "sklearn2pmml", "mleap")
TARGET_SECONDS = 0.5


def time_command(args: list[str], runs: int) -> dict:
    exe = shutil.which("packager") or str(Path(sys.executable).parent / "packager")
    subprocess.run([exe, *args], capture_output=True, check=True)  # warm the file cache
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([exe, *args], capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {"command": "packager " + " ".join(args), "runs": runs, "median_s": round(statistics.median(samples), 4),
            "p95_s": round(samples[int(0.95 * (runs - 1))], 4), "max_s": round(samples[-1], 4), "target_s": TARGET_SECONDS}


def installed() -> dict:
    found = {}
    for name in FRAMEWORKS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    results = {"machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count()},
               "frameworks_installed": installed(), "results": [time_command(c, runs) for c in COMMANDS]}
    out = Path(__file__).parent / "results" / "cli_startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for r in results["results"]:
        verdict = "ok" if r["p95_s"] < TARGET_SECONDS else "OVER TARGET"
        print(f"{r['command']:<20} median {r['median_s']*1000:6.0f} ms  p95 {r['p95_s']*1000:6.0f} ms  ({verdict})")
    return 0 if all(r["p95_s"] < TARGET_SECONDS for r in results["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
