"""Issue 26 point 13 through the CLI: ONNX from Keras/TF carries the manifest's output names, predict/bench take the
.npz that convert takes for multi-input models, and predict --keep-columns passes id columns through. Each re-checked
here in onnxruntime / the source framework, independently of packager."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import invoke_cli, run_cli


def _ort(path, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(feeds[i.name]).astype(np.int64 if "int64" in i.type else np.float32) for i in session.get_inputs()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


@pytest.fixture(scope="module")
def keras_two_inputs(tmp_path_factory):
    pytest.importorskip("keras")
    from tests.zoo.dl_round3 import keras_two_inputs_bn

    folder = tmp_path_factory.mktemp("keras2")
    model, held_out = keras_two_inputs_bn()
    model.save(folder / "wine_two_inputs.keras")
    np.savez(folder / "held_out.npz", **held_out)
    expected = np.asarray(model(held_out, training=False))
    done = invoke_cli("convert", str(folder / "wine_two_inputs.keras"), "--to", "onnx", "--sample", str(folder / "held_out.npz"),
                   "-o", str(folder / "pkg"), "--json")
    assert done.returncode == 0, done.stderr
    return folder, held_out, expected


def test_keras_onnx_output_carries_the_manifest_name(keras_two_inputs):
    """826a172: the ONNX output was `Identity:0`, the manifest said `cultivar`."""
    folder, held_out, expected = keras_two_inputs
    manifest = json.loads((folder / "pkg" / "manifest.json").read_text())
    got = _ort(folder / "pkg" / "model.onnx", held_out)
    assert list(got) == [o["name"] for o in manifest["signature"]["outputs"]] == ["cultivar"]
    np.testing.assert_allclose(got["cultivar"], expected, atol=1e-5)


def test_predict_and_bench_take_the_npz_convert_took(keras_two_inputs, tmp_path):
    """826a172: exit 2 "input held_out.npz has an unsupported type .npz"."""
    folder, held_out, expected = keras_two_inputs
    done = run_cli("predict", str(folder / "pkg"), str(folder / "held_out.npz"), "-o", str(tmp_path / "p.parquet"), "--batch-size", "10")
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert list(table.columns) == ["cultivar_0", "cultivar_1", "cultivar_2"] and len(table) == len(expected)
    np.testing.assert_allclose(table.to_numpy(), expected, atol=1e-5)
    bench = run_cli("bench", str(folder / "pkg"), "--data", str(folder / "held_out.npz"), "--batch-sizes", "1,8", "--json", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    (row,) = json.loads(bench.stdout)["artifacts"]
    assert not row["error"] and [m["batch_size"] for m in row["measurements"]] == [1, 8]
    np.savez(tmp_path / "wrong.npz", features=held_out["features"], bands=held_out["band"])
    wrong = run_cli("predict", str(folder / "pkg"), str(tmp_path / "wrong.npz"), "-o", str(tmp_path / "w.parquet"))
    assert wrong.returncode == 2
    assert "wrong.npz lacks the arrays ['band'] the model needs (it has ['features', 'bands'])" in wrong.stderr
    assert "np.savez(path, features=..., band=...)" in wrong.stderr


def test_tf_module_savedmodel_onnx_output_is_named(tmp_path):
    pytest.importorskip("tensorflow")
    from tests.zoo.dl_round3 import tf_module_savedmodel

    path, held_out, expected = tf_module_savedmodel(tmp_path)
    np.save(tmp_path / "x.npy", held_out)
    done = invoke_cli("convert", str(path), "--to", "onnx", "--sample", str(tmp_path / "x.npy"), "-o", str(tmp_path / "pkg"), "--json")
    assert done.returncode == 0, done.stderr
    got = _ort(tmp_path / "pkg" / "model.onnx", {"x": held_out})
    assert list(got) == ["progression"]
    np.testing.assert_allclose(got["progression"], expected, rtol=1e-5, atol=1e-3)


def test_keep_columns_pass_ids_through(tmp_path):
    """826a172: no such option; the id column was dropped with a note."""
    import pickle

    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model))
    rows = x.sample(frac=1.0, random_state=0)
    table = rows.copy()
    table.insert(0, "id", [f"w{i:03d}" for i in rows.index])
    table["shop"] = 7
    table.to_csv(tmp_path / "rows.csv", index=False)
    done = invoke_cli("predict", str(tmp_path / "m.pkl"), str(tmp_path / "rows.csv"), "-o", str(tmp_path / "p.parquet"),
                   "--keep-columns", "id,shop", "--batch-size", "50")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "p.parquet")
    assert list(out.columns[:3]) == ["id", "shop", "label"]
    assert list(out["id"]) == list(table["id"]) and set(out["shop"]) == {7}
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(rows))
    q = tmp_path / "q.csv"
    missing = invoke_cli("predict", str(tmp_path / "m.pkl"), str(tmp_path / "rows.csv"), "-o", str(q), "--keep-columns", "id,nope")
    assert missing.returncode == 2 and "--keep-columns ['nope'] are not columns of rows.csv" in missing.stderr
    assert not q.exists()
