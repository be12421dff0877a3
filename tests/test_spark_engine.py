"""`packager predict --engine spark`: Parquet partitions through mapInPandas in Spark's Python workers (one runtime
session per worker), equal to --engine local and --engine dask on the same rows, in the input's row order."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from packager.conversion import convert
from packager.errors import UsageError
from packager.inference import predict, resolve
from tests.conftest import run_cli

pytestmark = [pytest.mark.spark, pytest.mark.java, pytest.mark.slow]


@pytest.fixture(scope="module")
def wine(fixtures, tmp_path_factory, spark):
    """The wine forest's ONNX package, its rows as one Parquet file and as a folder of unequal parts."""
    root = tmp_path_factory.mktemp("spark-engine")
    fixture = fixtures["forest"]
    X = np.load(fixture.sample).astype(np.float32)
    rng = np.random.default_rng(0)
    X = np.concatenate([X] * 10) + rng.normal(0, 0.01, (10 * len(X), X.shape[1])).astype(np.float32)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    single = root / "rows.parquet"
    frame.to_parquet(single, row_group_size=100)
    parts = root / "parts"
    parts.mkdir()
    bounds = [0, 60, 500, 620, len(frame)]  # unequal sizes: Spark packs the largest file first
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        frame.iloc[start:stop].to_parquet(parts / f"part-{i}.parquet")
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=root / "onnx")
    return {"X": X, "single": single, "parts": parts, "package": package.path, "pickle": fixture.model, "rows": len(frame)}


def test_spark_dask_and_local_give_the_same_outputs(wine, tmp_path):
    from packager.distributed import predict_on_dask
    from packager.spark_engine import predict_on_spark

    artifact = resolve(wine["package"])
    predict(artifact, wine["single"], tmp_path / "local.parquet", batch_size=64)
    predict_on_dask(artifact, wine["single"], tmp_path / "dask", batch_size=64, workers=2)
    result = predict_on_spark(artifact, wine["single"], tmp_path / "spark", batch_size=64)
    local, dask, spark = (pd.read_parquet(tmp_path / name) for name in ("local.parquet", "dask", "spark"))
    assert result.rows == wine["rows"] and 1 <= result.loads <= 2
    assert list(spark.columns) == list(local.columns) == list(dask.columns)
    assert spark.dtypes.to_dict() == local.dtypes.to_dict()
    np.testing.assert_array_equal(spark["label"].to_numpy(), local["label"].to_numpy())
    np.testing.assert_array_equal(spark.to_numpy(), dask.to_numpy())
    np.testing.assert_allclose(spark.to_numpy(), local.to_numpy(), atol=1e-6)


def test_a_folder_of_parts_keeps_the_input_row_order(wine, tmp_path):
    from packager.spark_engine import predict_on_spark

    artifact = resolve(wine["package"])
    result = predict_on_spark(artifact, wine["parts"], tmp_path / "spark", batch_size=50)
    assert result.partitions >= 2 and result.rows == wine["rows"]
    # one session per Python worker (2 for local[2]), not one per partition or batch; 0 when the workers of the previous test,
    # reused by Spark, still hold this package's session
    assert result.loads <= 2, result
    predict(artifact, wine["single"], tmp_path / "local.parquet", batch_size=50)
    spark, local = pd.read_parquet(tmp_path / "spark"), pd.read_parquet(tmp_path / "local.parquet")
    np.testing.assert_array_equal(spark["label"].to_numpy(), local["label"].to_numpy())
    np.testing.assert_allclose(spark.drop(columns="label").to_numpy(), local.drop(columns="label").to_numpy(), atol=1e-6)


def test_columns_are_matched_by_name_strings_included(fixtures, spark, tmp_path):
    """A column pipeline (numbers and a text column): Spark's workers find each input by name, whatever the order."""
    import pickle

    from packager.spark_engine import predict_on_spark

    fixture = fixtures["columns"]
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=tmp_path / "onnx")
    frame = pd.read_parquet(fixture.sample)
    shuffled = tmp_path / "shuffled.parquet"
    frame[list(reversed(frame.columns))].to_parquet(shuffled)
    predict_on_spark(resolve(package.path), shuffled, tmp_path / "out", batch_size=16)
    with open(fixture.model, "rb") as fh:
        model = pickle.load(fh)
    out = pd.read_parquet(tmp_path / "out")
    probabilities = out[[c for c in out.columns if c.startswith("probabilities_")]].to_numpy()
    np.testing.assert_allclose(probabilities, model.predict_proba(frame), atol=1e-5)
    frame.drop(columns=["city"]).to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(UsageError, match=r"lacks the columns \['city'\]"):
        predict_on_spark(resolve(package.path), tmp_path / "missing.parquet", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_cli_engine_spark_with_a_master(wine, tmp_path):
    out = tmp_path / "cli-out"
    done = run_cli("predict", str(wine["package"]), str(wine["parts"]), "-o", str(out), "--engine", "spark", "--master", "local[2]",
                   "--output", "label", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["engine"] == "spark" and summary["rows"] == wine["rows"] and summary["master"] == "local[2]"
    assert list(pd.read_parquet(out).columns) == ["label"]
    again = run_cli("predict", str(wine["package"]), str(wine["parts"]), "-o", str(out), "--engine", "spark")
    assert again.returncode == 10 and "already exists" in again.stderr


def test_what_spark_cannot_run_is_refused_before_spark_works(wine, tmp_path):
    from packager.spark_engine import predict_on_spark

    npy = tmp_path / "rows.npy"
    np.save(npy, wine["X"])
    with pytest.raises(UsageError, match=r"reads Parquet, not \.npy"):
        predict_on_spark(resolve(wine["package"]), npy, tmp_path / "a")
    with pytest.raises(UsageError, match="sandbox does not confine"):
        predict_on_spark(resolve(wine["pickle"]), wine["single"], tmp_path / "b")
    assert not any(p.name in ("a", "b") for p in tmp_path.iterdir())
    wrong = run_cli("predict", str(wine["package"]), str(wine["single"]), "-o", str(tmp_path / "d"), "--master", "local[1]")
    assert wrong.returncode == 2 and "--engine spark" in wrong.stderr
