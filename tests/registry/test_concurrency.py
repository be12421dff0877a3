"""Concurrent pushes never share or lose a version; a push killed at any point leaves the catalog
and store consistent (verify clean, orphans collected by gc)."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.registry.api import Registry

PUSHER = [sys.executable, "-m", "tests.registry.pusher"]
ROOT = Path(__file__).resolve().parents[2]


def _spawn(catalog, blobs, package, name, count, *flags):
    return subprocess.Popen(
        [*PUSHER, catalog, blobs, str(package), name, str(count), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("processes,pushes", [(8, 50)])
def test_concurrent_pushes_get_distinct_versions(backend, package_dirs, processes, pushes):
    catalog, blobs = backend
    Registry(catalog, blobs)  # migrate once before the race
    workers = [_spawn(catalog, blobs, package_dirs["ridge"], "race", pushes) for _ in range(processes)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    printed = [line.split() for out, _ in outputs for line in out.splitlines()]
    versions = sorted(int(v) for v, _ in printed)
    assert versions == list(range(1, processes * pushes + 1))
    assert len({uid for _, uid in printed}) == processes * pushes
    stored = Registry(catalog, blobs).list("race")
    assert len(stored) == processes * pushes and stored[0].version == processes * pushes


@pytest.mark.slow
def test_kill_9_during_push_leaves_a_consistent_registry(tmp_path, fixtures):
    """20 pushes of a ~4 MB package, each killed at a random moment."""
    import numpy as np
    from sklearn.neural_network import MLPRegressor

    from packager.conversion import convert

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 256)).astype(np.float32)
    big = MLPRegressor(hidden_layer_sizes=(1024, 1024), max_iter=1, random_state=0).fit(X, X[:, 0])
    package = convert(big, to="onnx", sample=X, out=tmp_path / "big").path
    catalog, blobs = f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "objects")
    registry = Registry(catalog, blobs)
    files_per_version = len([p for p in package.rglob("*") if p.is_file()]) + 2  # + run.txt + pip freeze
    random.seed(0)
    for trial in range(20):
        worker = _spawn(catalog, blobs, package, "crash", 10_000, "--unique")
        time.sleep(random.uniform(0.5, 4.0))
        assert worker.poll() is None, worker.stderr.read()[-2000:]  # still pushing: the kill lands mid-work
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        for version in registry.list("crash"):
            assert len(registry.get(version.ref).files) == files_per_version, f"trial {trial}: {version.ref} is half-visible"
        assert registry.verify() == [], f"trial {trial}"
    versions = registry.list("crash")
    assert [v.version for v in reversed(versions)] == list(range(1, len(versions) + 1))
    collected = registry.gc()
    print(f"{len(versions)} versions committed across 20 killed pushers; gc removed {collected}")
    referenced = registry.referenced_digests()
    assert set(registry.blobs.digests()) == referenced
    assert not any((tmp_path / "objects" / "sha256" / "incoming").glob(".blob-*"))
    assert registry.verify() == []
