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
        [
            sys.executable,
            "-m",
            "packager.cli",
            "--debug",
            "convert",
            str(model),
            "--to",
            "onnx",
            "--quantize",
            "--sample",
            str(rows),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
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
    message = records[0].getMessage()
    assert records[0].levelno == logging.INFO and message.startswith("child x: %s%s%n") and len(message) < 1100
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
    with_path = {**env, "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run([sys.executable, "-c", code, "quiet"], capture_output=True, text=True, timeout=300, env=with_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "packager: OWN-WARNING" in quiet.stderr
    assert not any(word in quiet.stderr for word in ("OWN-DEBUG", "LIB-WARNING", "TORCH-WARNING")), quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "debug"], capture_output=True, text=True, timeout=300, env=with_path)
    assert "packager: OWN-DEBUG" in loud.stderr and "TORCH-WARNING" in loud.stderr, loud.stderr


def _declared_flags(path: Path) -> set[str]:
    """The ``--flags`` a module writes in a ``click.option(...)`` or ``cli(...)`` call."""
    import ast

    flags = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("option", "cli"):
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
    return flags


def test_each_request_option_is_written_once_on_its_field_and_nowhere_in_the_commands():
    """A flag that fills a request field is declared on that field (requests.py) and derived by the command: predict and
    bench spelled theirs in the command as well as taking the request's defaults in the API (two places per option)."""
    import click

    from packager.cli import main

    commands = {
        "convert": (rq.ConvertRequest,),
        "inspect": (rq.InspectRequest,),
        "validate": (rq.ValidateRequest,),
        "predict": (rq.PredictRequest,),
        "bench": (rq.BenchRequest, rq.BenchSettings),
    }
    derived: dict[str, set[str]] = {}
    for name, classes in commands.items():
        command = main.get_command(click.Context(main), name)
        assert command is not None
        fields = {f.name: f for cls in classes for f in rq.dataclasses.fields(cls) if "cli" in f.metadata}
        options = [p for p in command.params if isinstance(p, click.Option) and p.name in fields]
        for option in options:  # the flag and its default are the field's
            assert set(option.opts) <= set(fields[str(option.name)].metadata["cli"]["decls"]), (name, option.opts)
        derived[name] = {max(o.opts, key=len) for o in options}
        written_in_command = _declared_flags(ROOT / "packager" / "commands" / f"{name}.py") & derived[name]
        assert not written_in_command, f"{name}: {sorted(written_in_command)} spelled in the command as well"
    assert derived["predict"] == {"--out", "--batch-size", "--threads", "--output", "--force", "--text-column", "--keep-columns"}
    assert derived["bench"] == {"--data", "--model-class", "--batch-sizes", "--threads", "--min-seconds", "--text-column"}


def test_predict_and_bench_flags_keep_their_defaults_and_parse_lists(tmp_path):
    """The defaults the flags had when the commands spelled them (CLI contract), and the comma lists parsed on the way in:
    a bad --batch-sizes is one usage line, exit 2, before any work."""
    import click

    from packager.cli import main
    from tests.conftest import invoke_cli

    def defaults(name: str) -> dict[str, object]:
        command = main.get_command(click.Context(main), name)
        assert command is not None
        context = click.Context(command)
        return {max(p.opts, key=len): p.get_default(context) for p in command.params if isinstance(p, click.Option)}

    predict = defaults("predict")
    assert (predict["--batch-size"], predict["--engine"], predict["--workers"]) == (1024, "local", 2)
    bench = defaults("bench")
    assert (bench["--batch-sizes"], bench["--threads"], bench["--min-seconds"]) == ("1,32,1024,16384", 1, 0.5)
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((2, 2), np.float32))
    bad = invoke_cli("bench", str(rows), "--data", str(rows), "--batch-sizes", "1,x", "-o", str(tmp_path / "out"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].count("--batch-sizes '1,x' is not a list of numbers") == 1
    assert not (tmp_path / "out").exists()
    settings = rq.BenchSettings(batch_sizes=(1, 8))
    assert rq.from_data(
        rq.BenchRequest, rq.to_data(rq.BenchRequest(kind="artifact", path="/p", data="/d", settings=rq.dataclasses.asdict(settings)))
    ).settings["batch_sizes"] == [1, 8]
