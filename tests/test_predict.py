"""`packager predict` and `packager bench`: every runnable format over real data files, streamed in
batches, compared with the source model; column mismatches refused before any work; Dask on a
real 2-worker LocalCluster."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from packager.conversion import convert
from packager.errors import UsageError
from packager.inference import load_predictor, predict_file, resolve
from tests.conftest import invoke_cli, run_cli


@pytest.fixture(scope="module")
def wine(fixtures, tmp_path_factory):
    """The wine forest, its ONNX package, and its test rows as .npy/.parquet/.csv/.jsonl."""
    root = tmp_path_factory.mktemp("predict")
    fixture = fixtures["forest"]
    X = np.load(fixture.sample).astype(np.float32)
    X = np.concatenate([X] * 3)  # a few batches' worth
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    files = {"npy": root / "rows.npy", "parquet": root / "rows.parquet", "csv": root / "rows.csv", "jsonl": root / "rows.jsonl"}
    np.save(files["npy"], X)
    frame.to_parquet(files["parquet"], row_group_size=40)
    frame.to_csv(files["csv"], index=False)
    frame.to_json(files["jsonl"], orient="records", lines=True)
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=root / "onnx", trust=True)
    with open(fixture.model, "rb") as fh:
        model = pickle.load(fh)
    return {"X": X, "files": files, "package": package.path, "model": model, "pickle": fixture.model, "root": root}


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("probabilities_")]].to_numpy()


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv", "jsonl"])
def test_every_input_type_streams_through_onnx(wine, tmp_path, kind):
    predictor = load_predictor(resolve(wine["package"]))
    result = predict_file(predictor, wine["files"][kind], tmp_path / "out.parquet", batch_size=7)
    assert result.rows == len(wine["X"]) and result.batches == -(-len(wine["X"]) // 7)
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(_probabilities(out), wine["model"].predict_proba(wine["X"]), atol=1e-5)
    np.testing.assert_array_equal(out["label"].to_numpy(), wine["model"].predict(wine["X"]))


@pytest.mark.parametrize("suffix", ["csv", "npy"])
def test_outputs_to_csv_and_npy(wine, tmp_path, suffix):
    target = tmp_path / f"out.{suffix}"
    args = ["--output", "probabilities"] if suffix == "npy" else []
    result = invoke_cli(
        "predict", str(wine["package"]), str(wine["files"]["parquet"]), "-o", str(target), "--batch-size", "50", "--json", *args
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == len(wine["X"])
    got = np.load(target) if suffix == "npy" else _probabilities(pd.read_csv(target))
    np.testing.assert_allclose(got, wine["model"].predict_proba(wine["X"]), atol=1e-5)
    assert not list(tmp_path.glob(".*partial*"))


def test_npy_output_is_streamed_in_one_pass_and_refuses_what_it_cannot_hold(tmp_path):
    from packager.batches import OutputWriter
    from packager.errors import UsageError

    batches = [np.arange(i * 12, (i + 1) * 12, dtype=np.float32).reshape(4, 3) for i in range(3)]
    writer = OutputWriter(tmp_path / "out.npy")
    for batch in batches:
        writer.write({"y": batch})
    writer.close()
    assert (tmp_path / "out.npy").stat().st_size == 256 + 3 * batches[0].nbytes and not list(tmp_path.glob(".*"))  # header + rows, no parts
    assert np.array_equal(np.load(tmp_path / "out.npy"), np.concatenate(batches))
    for bad, message in [
        ([np.array(["cat", "dog"], dtype=object)], "text labels"),
        ([np.zeros((2, 3)), np.zeros((2, 4))], "changed shape"),
    ]:
        writer = OutputWriter(tmp_path / "bad.npy")
        with pytest.raises(UsageError, match=message):
            for batch in bad:
                writer.write({"y": batch})
        writer.abort()
        assert not list(tmp_path.glob("*bad*")) and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_text_inputs_are_parsed_as_the_model_needs_not_as_the_first_block_looks(wine, tmp_path, monkeypatch, kind):
    """A column of whole numbers in the first block and 2.5 later once failed mid-stream (inferred int64)."""
    from packager import batches
    from packager.errors import InputFileError

    monkeypatch.setattr(batches, "BLOCK_BYTES", 4096)  # many blocks from a small file
    frame = pd.DataFrame(np.round(wine["X"]), columns=[f"f{i}" for i in range(wine["X"].shape[1])])
    frame.iloc[-1, 0] = 2.5
    source = tmp_path / f"rows.{kind}"
    frame.to_csv(source, index=False) if kind == "csv" else source.write_text(
        frame.to_json(orient="records", lines=True).replace(".0,", ",")
    )
    predictor = load_predictor(resolve(wine["package"]))
    result = predict_file(predictor, source, tmp_path / "out.parquet", batch_size=64)
    assert result.rows == len(frame)
    expected = wine["model"].predict_proba(frame.to_numpy(dtype=np.float32))
    np.testing.assert_allclose(_probabilities(pd.read_parquet(tmp_path / "out.parquet")), expected, atol=1e-5)
    text = source.read_text()
    broken = tmp_path / f"broken.{kind}"
    broken.write_text(text[: len(text) // 2] + text[len(text) // 2:].replace("2.5", '"abc"' if kind == "jsonl" else "abc"))
    with pytest.raises(InputFileError, match=f"cannot read broken.{kind} to the end"):
        predict_file(predictor, broken, tmp_path / "broken.parquet", batch_size=64)
    assert not (tmp_path / "broken.parquet").exists() and not list(tmp_path.glob(".*partial*"))


def test_the_pickle_runs_natively_and_agrees_with_onnx(wine, tmp_path):
    native = invoke_cli("predict", wine["pickle"], str(wine["files"]["csv"]), "-o", str(tmp_path / "native.parquet"))
    assert native.returncode == 0, native.stderr
    np.testing.assert_allclose(
        _probabilities(pd.read_parquet(tmp_path / "native.parquet")), wine["model"].predict_proba(wine["X"]), atol=1e-12
    )


def test_column_mismatch_is_refused_before_any_work(wine, tmp_path):
    narrow = tmp_path / "narrow.parquet"
    pd.read_parquet(wine["files"]["parquet"]).iloc[:, :5].to_parquet(narrow)
    result = invoke_cli("predict", str(wine["package"]), str(narrow), "-o", str(tmp_path / "out.parquet"))
    assert result.returncode == UsageError.exit_code
    assert "has 5 columns" in result.stderr and "takes 13 features" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.parquet").exists() and not list(tmp_path.glob(".*partial*"))


def test_named_columns_are_matched_by_name(fixtures, tmp_path):
    """A column pipeline: inputs are found by column name, whatever the column order."""
    fixture = fixtures["columns"]
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=tmp_path / "onnx", trust=True)
    frame = pd.read_parquet(fixture.sample)
    shuffled = tmp_path / "shuffled.parquet"
    frame[list(reversed(frame.columns))].to_parquet(shuffled)
    predict_file(load_predictor(resolve(package.path)), shuffled, tmp_path / "out.parquet", batch_size=16)
    with open(fixture.model, "rb") as fh:
        model = pickle.load(fh)
    np.testing.assert_allclose(_probabilities(pd.read_parquet(tmp_path / "out.parquet")), model.predict_proba(frame), atol=1e-5)
    frame.drop(columns=["city"]).to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(UsageError, match=r"lacks the columns \['city'\]"):
        predict_file(load_predictor(resolve(package.path)), tmp_path / "missing.parquet", tmp_path / "never.parquet")
    assert not (tmp_path / "never.parquet").exists()


def test_a_registry_reference_is_pulled_and_run(wine, tmp_path):
    pushed = invoke_cli("push", str(wine["package"]), "--name", "wine-forest", "--json")
    assert pushed.returncode == 0, pushed.stderr
    result = invoke_cli("predict", "wine-forest@1", str(wine["files"]["npy"]), "-o", str(tmp_path / "out.parquet"), "--json")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(_probabilities(pd.read_parquet(tmp_path / "out.parquet")), wine["model"].predict_proba(wine["X"]), atol=1e-5)
    again = invoke_cli("predict", "wine-forest@1", str(wine["files"]["npy"]), "-o", str(tmp_path / "out.parquet"))
    assert again.returncode == 10 and "--force" in again.stderr


@pytest.mark.parametrize("target", ["tflite", "keras", "savedmodel"])
def test_keras_artifacts_run_over_npy(tmp_path, target):
    from fixtures import keras_models

    model, sample = keras_models.cnn()
    package = convert(model, to=target, sample=sample, out=tmp_path / "p")
    rows = np.concatenate([sample] * 4)
    np.save(tmp_path / "images.npy", rows)
    predict_file(load_predictor(resolve(package.path)), tmp_path / "images.npy", tmp_path / "out.npy", batch_size=5)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model(rows, training=False).numpy(), atol=1e-4)


def test_torchscript_runs_with_fixed_threads(tmp_path):
    import torch

    from fixtures import torch_models

    model, sample = torch_models.lstm_ids()
    package = convert(model, to="torchscript", sample=sample, out=tmp_path / "p")
    np.save(tmp_path / "ids.npy", sample)
    torch.set_num_threads(2)  # not the tests' default (OMP_NUM_THREADS=1, tests/conftest.py): the predictor must set it
    predictor = load_predictor(resolve(package.path), threads=1)
    predict_file(predictor, tmp_path / "ids.npy", tmp_path / "out.npy", batch_size=10)
    assert torch.get_num_threads() == 1
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model(torch.from_numpy(sample)).numpy(), atol=1e-5)


@pytest.mark.slow
def test_dask_engine_on_a_two_worker_local_cluster(wine, tmp_path):
    big = pd.read_parquet(wine["files"]["parquet"])
    parts = tmp_path / "input"
    parts.mkdir()
    for i in range(4):  # four files: four partitions
        big.to_parquet(parts / f"part-{i}.parquet")
    single = tmp_path / "all.parquet"
    pd.concat([big] * 4).to_parquet(single, row_group_size=100)
    from packager.distributed import predict_on_dask

    # trusted: the predictor is cached per worker (untrusted, each partition runs in its own sandbox: tests/test_sandbox.py)
    result = predict_on_dask(resolve(wine["package"]), single, tmp_path / "out", batch_size=64, workers=2, trust=True)
    assert result.workers == 2 and result.rows == 4 * len(big)
    assert all(count <= 1 for count in result.loads_per_worker.values()) and sum(result.loads_per_worker.values()) >= 1
    out = pd.read_parquet(tmp_path / "out")
    expected = wine["model"].predict_proba(np.concatenate([wine["X"]] * 4))
    np.testing.assert_allclose(_probabilities(out), expected, atol=1e-5)
    cli = run_cli("predict", str(wine["package"]), str(wine["files"]["csv"]), "-o", str(tmp_path / "cli-out"), "--engine", "dask", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["rows"] == len(big)
    wrong = run_cli("predict", str(wine["package"]), str(wine["files"]["npy"]), "-o", str(tmp_path / "x"), "--engine", "dask")
    assert wrong.returncode == 2 and "Parquet or CSV" in wrong.stderr


def test_bench_reports_every_artifact_against_the_baseline(wine, tmp_path):
    result = run_cli("bench", str(wine["package"]), "--baseline", wine["pickle"], "--data", str(wine["files"]["parquet"]),
                     "--batch-sizes", "1,16", "--min-seconds", "0.05", "-o", str(tmp_path / "bench"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    baseline, onnx = report["artifacts"]
    assert baseline["baseline"] and not onnx["baseline"] and onnx["format"] == "onnx"
    for artifact in (baseline, onnx):
        assert [m["batch_size"] for m in artifact["measurements"]] == [1, 16]
        assert all(m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"] and m["rows_per_second"] > 0 for m in artifact["measurements"])
        assert artifact["peak_rss_mb"] > 10 and artifact["size_bytes"] > 0 and artifact["load_seconds"] > 0
    assert report["machine"]["threads"] == 1 and report["machine"]["cores"] >= 1
    table = (tmp_path / "bench" / "bench.md").read_text()
    assert "× baseline" in table and "onnx" in table
    assert (tmp_path / "bench" / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_baseline_runs_one_pass_only_where_it_gives_what_predict_gives(wine):
    from packager.converters.sklearn import Sklearn
    from sklearn.svm import SVC

    from packager.bench import _baseline_call

    plugin, X = Sklearn(), wine["X"][:40]
    forest = wine["model"]
    signature = plugin.signature(forest, X[:8])
    feeds = plugin.feeds(forest, signature, X)
    one_pass = plugin.serve(forest, signature, feeds)
    two_passes = plugin.predict(forest, signature, feeds)
    assert np.array_equal(one_pass["label"], two_passes["label"]) and np.allclose(one_pass["probabilities"], two_passes["probabilities"])
    assert _baseline_call(plugin, forest, signature, feeds)(feeds)["label"].shape == (40,)
    # Platt-scaled SVC: predict is not the argmax of predict_proba on every row, so the bench keeps predict
    svc = SVC(probability=True, random_state=0).fit(wine["X"][:, :2], (wine["X"][:, 0] > np.median(wine["X"][:, 0])).astype(int))
    svc_signature = plugin.signature(svc, wine["X"][:8, :2])
    svc_feeds = plugin.feeds(svc, svc_signature, wine["X"][:, :2])
    assert not np.array_equal(
        plugin.serve(svc, svc_signature, svc_feeds)["label"], svc.predict(wine["X"][:, :2])
    )  # seeded: one row differs
    chosen = _baseline_call(plugin, svc, svc_signature, svc_feeds)
    assert chosen.__name__ == "predict" and np.array_equal(chosen(svc_feeds)["label"], svc.predict(wine["X"][:, :2]))


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_a_two_input_model_reads_one_list_column_per_input(tmp_path, kind):
    """Each input is a tensor per row, stored as a list column (was exit 70: 'setting an array element with a sequence')."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from fixtures.torch_models import two_inputs

    model, data = two_inputs()
    package = convert(model, to="onnx", sample=data, out=tmp_path / "onnx")
    path = tmp_path / f"rows.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table({name: pa.array(list(rows), type=pa.list_(pa.float32())) for name, rows in data.items()}), path)
    else:
        path.write_text("".join(json.dumps({"x": x.tolist(), "y": y.tolist()}) + "\n" for x, y in zip(data["x"], data["y"], strict=True)))
    result = invoke_cli("predict", str(package.path), str(path), "-o", str(tmp_path / "out.parquet"), "--batch-size", "10")
    assert result.returncode == 0, result.stderr
    got = pd.read_parquet(tmp_path / "out.parquet")
    with torch.no_grad():
        logits, mean = model(torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))
    np.testing.assert_allclose(got[["output_0_0", "output_0_1"]].to_numpy(), logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["output_1"].to_numpy(), mean.numpy(), atol=1e-5)


def test_a_tensor_input_given_as_scalar_columns_is_refused_before_any_work(tmp_path):
    from fixtures.torch_models import two_inputs

    model, data = two_inputs()
    package = convert(model, to="onnx", sample=data, out=tmp_path / "onnx")
    pd.DataFrame({"x": data["x"][:, 0], "y": data["y"][:, 0]}).to_parquet(tmp_path / "flat.parquet")
    result = invoke_cli("predict", str(package.path), str(tmp_path / "flat.parquet"), "-o", str(tmp_path / "out.parquet"))
    assert result.returncode == 2
    assert "hold one value per row" in result.stderr and "list column" in result.stderr
    assert not (tmp_path / "out.parquet").exists()
