"""Server time of the UI pages on a registry of 1,000 models × 10 versions (SQLite catalog).

    python benchmarks/ui_bench.py      # writes benchmarks/results/ui_bench.json

The catalog is filled through ``Registry.record`` (the server's own write path) with one shared
blob, so the 10,000 versions take minutes, not hours; pages are requested in-process through
the ASGI app (server time, no network), each 5 times after a warm-up, median reported.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS, VERSIONS = 1000, 10


def fill(registry, work: Path) -> None:
    from packager.registry.api import FileEntry

    blob = work / "model.onnx"
    blob.write_bytes(b"not really a model, one shared blob" * 100)
    stored = registry.blobs.put_file(blob)
    entries = [FileEntry("model.onnx", stored.digest, stored.size, "package")]
    manifest = {"format": "onnx", "signature": {"inputs": [{"name": "X", "dtype": "float32", "shape": [None, 20]}], "outputs": []},
                "validation": {"status": "passed", "runtime": "onnxruntime", "runtime_version": "1.32.0", "samples": 64, "outputs": []}}
    for m in range(MODELS):
        parent = None
        for v in range(VERSIONS):
            info = registry.record(f"model-{m:04d}", manifest, entries, {"environment": {"python": "3.11"}},
                                   params={"depth": str(v % 5)}, metrics={"accuracy": 0.8 + v / 100, "auc": 0.9 + v / 200},
                                   tags={"team": f"team-{m % 7}"}, aliases=["production"] if v == VERSIONS - 1 else (),
                                   parents=[parent] if parent else ())
            parent = info.id


def timed(client, url: str, params=None, runs: int = 5) -> float:
    client.get(url, params=params)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, params=params)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return round(statistics.median(samples) * 1000, 1)


def main() -> None:
    from fastapi.testclient import TestClient

    from packager.bench import describe_machine
    from packager.registry.api import Registry
    from packager.server.app import create_app

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        registry = Registry(f"sqlite:///{work / 'catalog.db'}", str(work / "objects"))
        started = time.perf_counter()
        fill(registry, work)
        filled = time.perf_counter() - started
        client = TestClient(create_app(registry, ["t"]))
        pages = {
            "model list (1,000 models)": timed(client, "/"),
            "search (tag.team = \"team-3\")": timed(client, "/", {"q": 'tag.team = "team-3"'}),
            "model page (10 versions)": timed(client, "/models/model-0500"),
            "version page (lineage of 10)": timed(client, "/versions/model-0500@5"),
            "compare 5 versions": timed(client, "/compare", [("ref", f"model-0500@{v}") for v in range(1, 6)]),
        }
    result = {"models": MODELS, "versions_per_model": VERSIONS, "fill_seconds": round(filled, 1), "median_ms": pages,
              "target_ms": 300, "machine": describe_machine(1)}
    (ROOT / "benchmarks" / "results" / "ui_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
