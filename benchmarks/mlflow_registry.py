"""The MLflow registry backend's reads against the embedded registry, side by side in one run (issue 25):
``list`` (latest of each model), ``list NAME``, ``search`` and ``get`` on the same versions pushed to both, each on a
fresh backend object (a new CLI process) and again on the same object (a server, a script), with the number of MLflow
client calls each read makes.

    python benchmarks/mlflow_registry.py [--models 3] [--versions 10] [--runs 3]

Writes benchmarks/results/mlflow_registry.json. The ratio is MLflow / embedded on the same machine, same moment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def _package(folder: Path) -> Path:
    """A real package (the push checks its model file): iris LogisticRegression to ONNX."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from packager.conversion import convert

    X, y = load_iris(return_X_y=True)
    return convert(LogisticRegression(max_iter=500).fit(X, y), to="onnx", out=folder / "package", trust=True).path


class _Counter:
    """Counts calls to the MlflowClient methods the backend uses (wrapping the real client's bound methods)."""

    def __init__(self, client):
        self.calls = 0
        for name in ("search_model_versions", "get_run", "get_registered_model", "download_artifacts", "get_model_version",
                     "get_model_version_by_alias", "search_runs", "get_experiment_by_name"):  # fmt: skip
            original = getattr(client, name)

            def counted(*args, _original=original, **kwargs):
                self.calls += 1
                return _original(*args, **kwargs)

            setattr(client, name, counted)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from packager.registry.backends import open_registry

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        package = _package(work)
        urls = {"mlflow": f"mlflow:sqlite:///{work / 'mlflow.db'}", "embedded": f"sqlite:///{work / 'catalog.db'}"}
        started = time.perf_counter()
        for url in urls.values():
            registry = open_registry(url, str(work / "objects"))
            for m in range(args.models):
                for _ in range(args.versions):
                    registry.push(
                        package, f"model-{m}", tags={"team": "fraud" if m % 2 else "risk"}, metrics={"accuracy": 0.95}, trust=True
                    )
        pushed = time.perf_counter() - started
        reads = {
            "list (latest of each model)": lambda r: r.list(),
            "list one model": lambda r: r.list("model-0"),
            "search tag+metric": lambda r: r.search('tag.team = "risk" and metric.accuracy > 0.9'),
            "get name@version": lambda r: r.get("model-0@3"),
        }
        rows = []
        for label, read in reads.items():
            answers = {kind: read(open_registry(url, str(work / "objects"))) for kind, url in urls.items()}
            refs = {kind: [(v.ref, v.digest, tuple(v.aliases)) for v in (a if isinstance(a, list) else [a])] for kind, a in answers.items()}
            assert refs["mlflow"] == refs["embedded"] and refs["mlflow"], (label, refs)  # the same answer, or the timing means nothing
            row = {"read": label}
            for kind, url in urls.items():
                cold, warm, calls = [], [], 0
                for _ in range(args.runs):
                    registry = open_registry(url, str(work / "objects"))
                    counter = _Counter(registry.client) if kind == "mlflow" else None
                    t0 = time.perf_counter()
                    read(registry)
                    cold.append(time.perf_counter() - t0)
                    calls = counter.calls if counter else 0
                    t0 = time.perf_counter()
                    read(registry)
                    warm.append(time.perf_counter() - t0)
                row[f"{kind} cold ms"] = round(statistics.median(cold) * 1000, 1)
                row[f"{kind} warm ms"] = round(statistics.median(warm) * 1000, 1)
                if kind == "mlflow":
                    row["mlflow client calls (cold)"] = calls
            row["cold ratio"] = round(row["mlflow cold ms"] / row["embedded cold ms"], 1)
            row["warm ratio"] = round(row["mlflow warm ms"] / row["embedded warm ms"], 1)
            rows.append(row)
            print(json.dumps(row))
    report = {"models": args.models, "versions_per_model": args.versions, "runs": args.runs, "push_seconds_both": round(pushed, 1),
              "rows": rows}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mlflow_registry.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
