"""Issue 22 item 1: one request per operation, executed by one worker, never by the public function calling itself again.

The acceptance figure (``convert model.pkl --to onnx --quantize``: the convert worker runs once, the plugins load once per
process) is read from packager's own log records: the child's come back with its answer (``packager.logs.replay``),
so one CLI process shows both sides.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from packager import requests as rq
from packager.logs import replay

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def iris_file(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("iris")
    X, y = load_iris(return_X_y=True)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    np.save(folder / "rows.npy", X[::5].astype(np.float32))
    return path, folder / "rows.npy"


def test_one_convert_runs_the_convert_worker_once_and_loads_the_plugins_once_per_process(iris_file, tmp_path):
    model, rows = iris_file
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "packager.cli", "--debug", "convert", str(model), "--to", "onnx", "--quantize", "--sample", str(rows),
         "-o", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("packager: ")]
    parent = [line for line in lines if not line.startswith("packager: child ")]
    child = [line for line in lines if line.startswith("packager: child ")]
    assert sum("executing the convert worker" in line for line in child) == 1, lines
    assert sum("executing the" in line for line in parent) == 0, lines  # the parent delegates; it executes no worker
    assert sum("submitting the conversion" in line for line in parent) == 1, lines
    assert sum("submitting the conversion" in line for line in child) == 0, lines  # the child does not re-enter convert
    assert sum("loaded the plugins" in line for line in parent) == 1, lines
    assert sum("loaded the plugins" in line for line in child) == 1, lines
    assert (out / "manifest.json").is_file()


def test_every_request_crosses_as_plain_data_and_back():
    import json

    made = [
        rq.ConvertRequest(path="/m.pkl", targets=("onnx", "pmml"), out="/o", plugin_options={"script": True}, tolerance=("p=1e-3",)),
        rq.PackageRequest(path="/m.pkl", out="/o"),
        rq.InspectRequest(path="/m.pkl", input_shape="1,4"),
        rq.CheckRequest(path="/m.onnx", fmt="onnx"),
        rq.ValidateRequest(artifact="/a", source="/m.pkl", atol=1e-3),
        rq.PredictRequest(model="/p", data="/d.parquet", output="/o.parquet", outputs=("label",), keep_columns=("id",)),
        rq.BenchRequest(kind="artifact", path="/p", data="/d.parquet", settings={"batch_sizes": [1, 32]}),
    ]
    for request in made:
        data = json.loads(json.dumps(rq.to_data(request)))
        assert rq.from_data(type(request), data) == request
    with pytest.raises(rq.MalformedRequest, match="has no field 'trust'"):
        rq.from_data(rq.ConvertRequest, {"path": "/m.pkl", "trust": True})  # trust never travels in a request
    with pytest.raises(rq.MalformedRequest, match="must be a JSON object"):
        rq.from_data(rq.InspectRequest, ["/m.pkl"])
    with pytest.raises(rq.MalformedRequest, match="InspectRequest"):
        rq.from_data(rq.InspectRequest, {})


def test_the_child_log_records_are_replayed_as_data(caplog):
    """A child ran untrusted code: its records are strings and levels, capped, never format strings."""
    caplog.set_level(logging.DEBUG, logger="packager")
    hostile = [{"name": "x", "level": 99, "message": "%s%s%n" + "A" * 5000}, "not a record", {"level": "40"}] + [{"message": "m"}] * 500
    replay(hostile)
    replay("not a list")
    records = [r for r in caplog.records if r.name == "packager.sandbox"]
    assert len(records) == 100 - 1  # capped at 100 entries, the one that is not a dict skipped
    assert records[0].levelno == logging.INFO and records[0].getMessage().startswith("child x: %s%s%n") and len(records[0].getMessage()) < 1100
    assert all(getattr(r, "sandboxed", False) for r in records)


def test_the_cli_logging_shows_packager_and_quiets_the_libraries():
    """``logs.configure`` (no ``logging.disable``): packager's warnings reach stderr, a library's warning does not, torch's
    own handler included; with --debug packager's debug records show too."""
    code = (
        "import logging, sys\nfrom packager.logs import configure\nconfigure(sys.argv[1] == 'debug')\n"
        "import torch\n"
        "logging.getLogger('packager.x').warning('OWN-WARNING')\nlogging.getLogger('packager.x').debug('OWN-DEBUG')\n"
        "logging.getLogger('somelib').warning('LIB-WARNING')\nlogging.getLogger('torch.onnx').warning('TORCH-WARNING')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TORCH_LOGS"}
    quiet = subprocess.run([sys.executable, "-c", code, "quiet"], capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)})
    assert quiet.returncode == 0, quiet.stderr
    assert "packager: OWN-WARNING" in quiet.stderr
    assert not any(word in quiet.stderr for word in ("OWN-DEBUG", "LIB-WARNING", "TORCH-WARNING")), quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "debug"], capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)})
    assert "packager: OWN-DEBUG" in loud.stderr and "TORCH-WARNING" in loud.stderr, loud.stderr
