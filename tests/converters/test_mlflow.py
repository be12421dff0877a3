"""MLflow (issue 25), real MLflow throughout: models logged and registered into a sqlite tracking store in a tmp folder,
converted from ``models:/`` URIs, judged against ``mlflow.pyfunc.load_model(uri).predict`` on held-out rows of bundled
datasets; packages loaded back by ``mlflow.pyfunc.load_model(PACKAGE)``; hostile MLflow folders refused before anything
loads; MLflow's registry as packager's registry."""

from __future__ import annotations

import filecmp
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.mlflow

MARKER_NAME = "mlflow-pwned.txt"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """An empty MLflow sqlite store, made once (MLflow's migrations take seconds per new database)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, template_db, monkeypatch):
    """MLFLOW_TRACKING_URI = a fresh sqlite store, artifacts in the same tmp folder; an experiment to log into."""
    shutil.copyfile(template_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.MlflowClient().create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    mlflow.set_tracking_uri(None)


def _iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = [f"f{i}" for i in range(X.shape[1])]  # LightGBM rewrites names with spaces; plain names keep one table
    return X[::2].reset_index(drop=True), y[::2].reset_index(drop=True), X[1::2].reset_index(drop=True)


def _diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return X[::2].astype("float32"), y[::2].astype("float32"), X[1::2].astype("float32")


def _log(flavor: str, name: str) -> tuple[str, object]:
    """Log and register one model with MLflow's own flavor API; returns (models:/ URI, held-out rows)."""
    if flavor == "pytorch":
        import torch

        X, y, held = _diabetes()
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(torch.from_numpy(X)).squeeze(1), torch.from_numpy(y) / 100)
            loss.backward()
            optimizer.step()
        with mlflow.start_run():
            mlflow.pytorch.log_model(net.eval(), name="model", export_model=True, input_example=X[:5], registered_model_name=name)
    else:
        X, y, held = _iris()
        if flavor == "sklearn":
            from sklearn.linear_model import LogisticRegression

            model, log = LogisticRegression(max_iter=1000).fit(X, y), mlflow.sklearn.log_model
        elif flavor == "xgboost":
            import xgboost

            model, log = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y), mlflow.xgboost.log_model
        else:
            import lightgbm

            model, log = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y), mlflow.lightgbm.log_model
        with mlflow.start_run():
            log(model, name="model", input_example=X[:5], registered_model_name=name)
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")
    return f"models:/{name}@champion", held


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["sklearn", "xgboost", "lightgbm", "pytorch"])
def test_a_models_uri_converts_and_the_package_agrees_with_mlflow(flavor, store, tmp_path):
    """convert models:/NAME@champion --to onnx, validated on held-out rows; then the package through
    mlflow.pyfunc.load_model agrees with the MLflow model itself, and equals `packager predict` on the same rows."""
    import pandas as pd

    from packager.conversion import convert
    from packager.inference import load_predictor, predict, resolve

    uri, held = _log(flavor, f"m-{flavor}")
    sample = tmp_path / "held.npy" if flavor == "pytorch" else tmp_path / "held.csv"
    np.save(sample, held) if flavor == "pytorch" else held.to_csv(sample, index=False)
    package = convert(uri, to="onnx", sample=str(sample), out=tmp_path / "pkg")
    assert package.validation["status"] == "passed" and package.validation["data_source"] == "sample"
    origin = package.manifest.source.details["mlflow"]
    assert origin["uri"] == uri and origin["version"] == "1" and origin["name"] == f"m-{flavor}" and len(origin["run_id"]) == 32
    assert origin["flavor"] == flavor and package.manifest.source.format == "mlflow"

    expected = mlflow.pyfunc.load_model(uri).predict(held)
    ours = mlflow.pyfunc.load_model(str(package.path)).predict(held)
    assert json.loads((package.path / "MLmodel").read_text())["flavors"]["onnx"]["data"] == "model.onnx"
    if flavor == "pytorch":
        expected = np.asarray(expected, dtype=np.float64).reshape(-1)
        got = ours["output_0"].to_numpy()
        spread = float(expected.max() - expected.min())
        assert np.max(np.abs(got - expected)) <= 0.02 * spread, np.max(np.abs(got - expected))
    else:
        assert (ours["label"].to_numpy() == np.asarray(expected)).mean() == 1.0  # label agreement 100% (75 rows)
    out = tmp_path / "predicted.parquet"
    predict(resolve(package.path), sample, out)  # `packager predict` (confined)
    written = pd.read_parquet(out)
    assert list(written.columns) == list(ours.columns)
    np.testing.assert_array_equal(written.to_numpy(), ours.to_numpy())
    del load_predictor


def _folder(tmp_path: Path, name: str, flavors: dict, files: dict[str, bytes]) -> Path:
    import yaml

    root = tmp_path / name
    root.mkdir()
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, "mlflow_version": "3.17.2"}))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


class Gadget:
    """A type no allow-list knows: skops would import this module and build it if the MLmodel's list were a grant."""

    def __setstate__(self, state):
        Path(state.get("marker", MARKER_NAME)).write_text("pwned")


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_mlflow_folders_are_refused_before_anything_loads(tmp_path):
    """Each folder would write the marker if its model were loaded as MLflow loads it; packager refuses each with
    exit 5 (unsafe) and one line naming the reason, and the marker never appears."""
    import cloudpickle
    from skops.io import dumps as skops_dumps

    marker = tmp_path / MARKER_NAME
    payload = pickle.dumps(_Payload(str(marker)))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pkl").write_bytes(payload)

    def evil():
        return open(str(marker), "w")

    # a skops file holding a type not on packager's list, which the MLmodel lists as trusted
    skops_bytes = skops_dumps(Gadget())
    import torch

    whole_module = tmp_path / "whole.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 1)), whole_module)
    cases = {
        "escape": (
            _folder(tmp_path, "escape", {"sklearn": {"pickled_model": "../outside/model.pkl", "serialization_format": "cloudpickle"}}, {}),
            "points outside the folder",
        ),
        "absolute": (
            _folder(tmp_path, "absolute", {"sklearn": {"pickled_model": str(outside / "model.pkl")}}, {}),
            "points outside the folder",
        ),
        "pickle": (
            _folder(
                tmp_path, "pickle", {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}}, {"model.pkl": payload}
            ),
            "posix.system",
        ),
        "cloudpickled-function": (
            _folder(
                tmp_path,
                "cloudpickled",
                {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}},
                {"model.pkl": cloudpickle.dumps(evil)},
            ),
            "model.pkl",
        ),
        "skops-claimed-trusted": (
            _folder(
                tmp_path,
                "skops",
                {
                    "sklearn": {
                        "pickled_model": "model.skops",
                        "serialization_format": "skops",
                        "skops_trusted_types": [f"{__name__}.Gadget"],
                    }
                },
                {"model.skops": skops_bytes},
            ),
            "Gadget",
        ),
        "pytorch-pickled-module": (
            _folder(tmp_path, "torchpickle", {"pytorch": {"model_data": "data"}}, {"data/model.pth": whole_module.read_bytes()}),
            "export_model=True",
        ),
        "pyfunc-custom-code": (
            _folder(
                tmp_path,
                "pyfunc",
                {"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}},
                {"python_model.pkl": payload},
            ),
            "custom code",
        ),
    }
    for case, (folder, reason) in cases.items():
        done = run_cli("inspect", str(folder))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 5, (case, done.returncode, done.stderr[-2000:])
        assert len(lines) == 1 and reason in lines[0], (case, lines)
        assert not marker.exists(), case
    # the refusals are the check's, not a loader's crash: the same pickle, trusted, does run (the check can fail)
    (tmp_path / "pickle" / "model.pkl").write_bytes(payload)
    run_cli("inspect", "--trust", str(tmp_path / "pickle"))
    assert marker.exists()


@pytest.mark.slow
def test_push_to_mlflow_registry_then_pull_into_another_home(store, tmp_path, package_dirs):
    """PACKAGER_REGISTRY=mlflow:sqlite:///...: push, then pull with another PACKAGER_HOME; the model file is byte-identical
    and MLflow's own client sees the version with packager's tags and the alias."""
    env = {**os.environ, "PACKAGER_REGISTRY": f"mlflow:{store}", "PACKAGER_HOME": str(tmp_path / "home-a")}
    pushed = run_cli("push", str(package_dirs["onnx"]), "--name", "fraud", "--alias", "champion", "--tag", "team=risk", env=env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    env_b = {**env, "PACKAGER_HOME": str(tmp_path / "home-b")}
    pulled = run_cli("pull", "fraud@champion", "-o", str(tmp_path / "pulled"), env=env_b)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert filecmp.cmp(package_dirs["onnx"] / "model.onnx", tmp_path / "pulled" / "model.onnx", shallow=False)
    manifest = json.loads((package_dirs["onnx"] / "manifest.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=store)
    version = client.get_model_version_by_alias("fraud", "champion")
    assert str(version.version) == "1" and version.tags["packager.format"] == "onnx" and version.tags["team"] == "risk"
    assert version.tags["packager.validation"] == manifest["validation"]["status"] and len(version.tags["packager.digest"]) == 64
    assert version.source.endswith("/package") and client.get_run(version.run_id).info.status == "FINISHED"
    # the pulled package is an MLflow model: MLflow loads it by the registry's own URI too
    loaded = mlflow.pyfunc.load_model("models:/fraud@champion")
    assert loaded.metadata.flavors["python_function"]["loader_module"] == "packager.mlflow_pyfunc"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_models_uri_on_an_mlflow_server_on_loopback(tmp_path, template_db, monkeypatch):
    """The same through `mlflow server` (http://127.0.0.1:PORT, artifacts proxied by the server): the URI resolves,
    the package validates, and its lineage names the server without credentials."""
    import subprocess
    import sys
    import time
    import urllib.request

    from sklearn.linear_model import LogisticRegression

    from packager.conversion import convert

    shutil.copyfile(template_db, tmp_path / "server.db")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("w"), start_new_session=True,
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("served")  # created by the server: its artifacts go through the server (mlflow-artifacts:/)
        X, y, held = _iris()
        with mlflow.start_run():
            mlflow.sklearn.log_model(LogisticRegression(max_iter=1000).fit(X, y), name="model", registered_model_name="iris")
        held.to_csv(tmp_path / "held.csv", index=False)
        package = convert("models:/iris/1", to="onnx", sample=str(tmp_path / "held.csv"), out=tmp_path / "pkg")
        assert package.validation["status"] == "passed"
        assert (
            package.manifest.source.details["mlflow"]["tracking_uri"] == uri and package.manifest.source.details["mlflow"]["version"] == "1"
        )
        expected = mlflow.pyfunc.load_model("models:/iris/1").predict(held)
        got = mlflow.pyfunc.load_model(str(package.path)).predict(held)["label"].to_numpy()
        assert (got == np.asarray(expected)).mean() == 1.0
    finally:
        mlflow.set_tracking_uri(None)
        os.killpg(server.pid, 15)  # the server and its workers: their own process group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # measured: mlflow 3.17's server outlived SIGTERM by 30 s once (its job runner)
            os.killpg(server.pid, 9)
            server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("target", [pytest.param("pmml", marks=pytest.mark.java), "skops", "torchscript"])
def test_mlflow_loads_every_kind_of_package_and_predicts_as_packager_does(target, fixtures, tmp_path):
    """mlflow.pyfunc.load_model(PACKAGE).predict equals `packager predict` on the same rows, for PMML (JVM), skops
    and TorchScript packages (ONNX: the models:/ test above); the MLmodel names no native flavor MLflow lacks."""
    import pandas as pd

    from packager.conversion import convert
    from packager.inference import predict, resolve

    if target == "torchscript":
        import torch

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
        rows = np.load(fixtures["forest"].sample).astype("float32")
        sample = tmp_path / "rows.npy"
        np.save(sample, rows)
        program = tmp_path / "net.pt2"
        batch = {0: torch.export.Dim("batch")}
        torch.export.save(torch.export.export(net, (torch.from_numpy(rows[:4]),), dynamic_shapes=(batch,)), program)
        source = str(program)
    else:
        source, sample = fixtures["forest"].model, Path(fixtures["forest"].sample)
    package = convert(source, to=target, sample=str(sample), out=tmp_path / "pkg")
    assert package.validation["status"] == "passed"
    assert set(json.loads((package.path / "MLmodel").read_text())["flavors"]) == {"python_function"}
    out = tmp_path / "predicted.parquet"
    predict(resolve(package.path), sample, out)
    written = pd.read_parquet(out)
    rows = np.load(sample) if sample.suffix == ".npy" else pd.read_parquet(sample)
    ours = mlflow.pyfunc.load_model(str(package.path)).predict(rows)
    assert list(written.columns) == list(ours.columns) and len(ours) == len(rows) > 0
    np.testing.assert_array_equal(written.to_numpy(), ours.to_numpy())


def test_packager_serve_refuses_an_mlflow_registry_with_the_reason(store):
    """`packager serve` uploads pushes into a content-addressed blob store, which an MLflow registry does not have (the
    server answered HTTP 500 on the first push before this check): refused at start, naming what to do instead."""
    from packager.errors import UsageError
    from packager.registry.backends import open_registry
    from packager.server.app import create_app

    with pytest.raises(UsageError, match="keeps no such store") as refused:
        create_app(open_registry(f"mlflow:{store}"), ["token"])
    assert "mlflow:http://" in refused.value.hint
