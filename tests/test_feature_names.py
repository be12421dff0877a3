"""Columns are matched by name whenever the model knows its feature names (issue 13).

A breast-cancer pipeline fitted on a DataFrame, given a CSV whose 30 columns are in reverse order: by position, its
predictions agreed with the source's on 37% of rows, silently. By name: exactly the source's predictions, from the
ONNX package and from the source pickle; a missing column is refused naming it (exit 2); an extra one is ignored with
a note. The same rule holds where validate and bench read a table.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from packager.errors import UsageError
from packager.signature import Signature, TensorSpec
from tests.conftest import invoke_cli


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import convert

    root = tmp_path_factory.mktemp("names")
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    y = load_breast_cancer().target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(frame, y)
    path = root / "cancer.pkl"
    path.write_bytes(pickle.dumps(model))
    reversed_csv = root / "reversed.csv"
    frame[frame.columns[::-1]].to_csv(reversed_csv, index=False)
    package = convert(path, to="onnx", out=root / "onnx")
    return {"model": model, "frame": frame, "pickle": path, "package": package.path, "reversed": reversed_csv, "root": root}


def _labels(path) -> np.ndarray:
    return pd.read_csv(path)["label"].to_numpy()


def test_the_manifest_records_the_feature_names_in_the_models_order(cancer):
    manifest = json.loads((cancer["package"] / "manifest.json").read_text())
    assert manifest["signature"]["inputs"][0]["names"] == list(cancer["frame"].columns)


@pytest.mark.parametrize("artifact", ["package", "pickle"])
def test_reversed_columns_predict_exactly_what_the_source_predicts(cancer, tmp_path, artifact):
    want = cancer["model"].predict(cancer["frame"])
    by_position = cancer["model"].predict(cancer["frame"][cancer["frame"].columns[::-1]].to_numpy())
    assert np.mean(by_position == want) < 0.9  # what reading by position did (37% measured): the test can tell
    out = tmp_path / "out.csv"
    result = invoke_cli("predict", str(cancer[artifact]), str(cancer["reversed"]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(_labels(out), want)
    assert "by position" not in result.stderr and "ignoring" not in result.stderr


def test_a_missing_column_is_refused_naming_it(cancer, tmp_path):
    short = tmp_path / "short.csv"
    cancer["frame"].drop(columns="worst area").to_csv(short, index=False)
    result = invoke_cli("predict", str(cancer["package"]), str(short), "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "worst area" in lines[0] and "lacks" in lines[0], result.stderr
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".*partial*"))


def test_an_extra_column_is_ignored_with_a_note(cancer, tmp_path):
    wide = tmp_path / "wide.csv"
    frame = cancer["frame"].assign(patient_id=np.arange(len(cancer["frame"])))
    frame[["patient_id", *cancer["frame"].columns[::-1]]].to_csv(wide, index=False)
    out = tmp_path / "out.csv"
    result = invoke_cli("predict", str(cancer["package"]), str(wide), "-o", str(out))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "patient_id" in line]
    assert len(notes) == 1 and notes[0].startswith("warning:") and "ignoring" in notes[0], result.stderr
    np.testing.assert_array_equal(_labels(out), cancer["model"].predict(cancer["frame"]))


def test_a_model_without_names_is_fed_by_position_and_says_so_once(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    path = tmp_path / "iris.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    rows = tmp_path / "rows.csv"
    pd.DataFrame(X, columns=["d", "c", "b", "a"]).to_csv(rows, index=False)
    result = invoke_cli("predict", str(path), str(rows), "-o", str(tmp_path / "out.csv"), "--batch-size", "10")
    assert result.returncode == 0, result.stderr
    assert sum("by position" in line for line in result.stderr.splitlines()) == 1, result.stderr


def test_validate_reads_a_reordered_sample_by_name(cancer):
    """validate's --sample is a table too: the rows it judges on are the user's rows in the model's order (by
    position, source and artifact both got the same permuted matrix and agreed, on inputs nobody meant)."""
    from packager.conversion import gather_evidence, load_source
    from packager.inspection import validate

    evidence = gather_evidence(load_source(cancer["pickle"]), sample=cancer["reversed"])
    np.testing.assert_allclose(evidence.feeds["X"], cancer["frame"].to_numpy(np.float32))
    np.testing.assert_array_equal(evidence.expected["label"], cancer["model"].predict(cancer["frame"]))
    report = validate(cancer["package"], cancer["pickle"], sample=cancer["reversed"])
    assert report.status == "passed" and report.data_source == "sample" and report.samples == len(cancer["frame"])


def test_bench_feeds_follow_the_names(cancer):
    from packager.bench import _bench_feeds
    from packager.inference import load_predictor, resolve

    signature = load_predictor(resolve(cancer["package"])).signature
    feeds = _bench_feeds(signature, str(cancer["reversed"]), 50)
    np.testing.assert_allclose(feeds["X"], cancer["frame"].to_numpy(np.float32)[:50])


def test_a_sample_table_names_the_features_of_a_model_without_names(tmp_path):
    """Converted with a named sample, the package reads later tables by those names."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from packager.conversion import convert

    X, y = load_iris(return_X_y=True)
    sample = tmp_path / "sample.csv"
    pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"]).to_csv(sample, index=False)
    package = convert(LogisticRegression(max_iter=500).fit(X, y), to="onnx", sample=sample, out=tmp_path / "onnx")
    assert package.manifest.signature.inputs[0].names == ("sl", "sw", "pl", "pw")
    shuffled = tmp_path / "shuffled.csv"
    pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])[["pw", "sl", "pl", "sw"]].to_csv(shuffled, index=False)
    out = tmp_path / "out.csv"
    result = invoke_cli("predict", str(package.path), str(shuffled), "-o", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(_labels(out), LogisticRegression(max_iter=500).fit(X, y).predict(X))


def test_signature_names_round_trip_and_old_manifests_read_without_them():
    spec = TensorSpec("X", "float32", (None, 2), names=("a", "b"))
    assert TensorSpec.from_dict(spec.to_dict()) == spec
    assert "names" not in TensorSpec("X", "float32", (None, 2)).to_dict()
    assert TensorSpec.from_dict({"name": "X", "dtype": "float32", "shape": [None, 2]}).names is None


def test_align_table_refuses_missing_and_reorders():
    from packager.columns import align_table

    signature = Signature((TensorSpec("X", "float32", (None, 2), names=("a", "b")),))
    frame = pd.DataFrame({"b": [1.0], "a": [2.0]})
    assert list(align_table(signature, frame, "t.csv").columns) == ["a", "b"]
    with pytest.raises(UsageError, match=r"t.csv lacks the column \[b\]"):
        align_table(signature, frame[["a"]], "t.csv")


def test_lightgbm_renamed_features_still_read_the_datasets_own_columns(tmp_path):
    """LightGBM stores breast-cancer's "mean radius" as "mean_radius"; users feed load_breast_cancer's own frame. Every target
    refused it ("lacks the columns [mean_radius, …]"); now the one column that reads the same with "_" is taken, in the
    model's order, and the predictions are the source's."""
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.datasets import load_breast_cancer

    from packager.columns import match_names
    from packager.conversion import convert

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    assert model.booster_.feature_name()[0] == "mean_radius"
    source = tmp_path / "lgbm.pkl"
    source.write_bytes(pickle.dumps(model))
    sample = tmp_path / "cancer.csv"
    X.iloc[:100, ::-1].to_csv(sample, index=False)
    package = convert(source, to="onnx", sample=sample, out=tmp_path / "pkg")
    assert package.manifest.validation["data_source"] == "sample"
    result = invoke_cli("predict", str(tmp_path / "pkg"), str(sample), "-o", str(tmp_path / "out.parquet"))
    assert result.returncode == 0, result.stderr
    labels = pd.read_parquet(tmp_path / "out.parquet")["label"].to_numpy()
    np.testing.assert_array_equal(labels, model.predict(X.iloc[:100].to_numpy()))
    with pytest.raises(UsageError, match=r"lacks the column \[a_b\]"):
        match_names(["a_b"], ["a b", "a-b"], "t.csv")  # two columns read the same: ambiguous, refused
