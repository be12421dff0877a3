"""`packager predict --engine spark`: Parquet or CSV partitions through mapInPandas in Spark's Python workers (one runtime
session per worker), equal to --engine local and --engine dask on the same rows, in the input's row order."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from packager.conversion import convert
from packager.errors import InputFileError, UsageError
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
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=root / "onnx", trust=True)
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
    result = predict_on_spark(artifact, wine["parts"], tmp_path / "spark", batch_size=50, trust=True)
    assert result.partitions >= 2 and result.rows == wine["rows"]
    # trusted: one session per Python worker (2 for local[2]), not one per partition or batch; 0 when the workers of the
    # previous test, reused by Spark, still hold this package's session (untrusted, each partition runs in its own sandbox)
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
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=tmp_path / "onnx", trust=True)
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
    with pytest.raises(UsageError, match=r"reads Parquet or CSV, not \.npy"):
        predict_on_spark(resolve(wine["package"]), npy, tmp_path / "a")
    with pytest.raises(UsageError, match="sandbox does not confine"):
        predict_on_spark(resolve(wine["pickle"]), wine["single"], tmp_path / "b")
    from packager.inference import Runnable

    pmml = Runnable(tmp_path / "model.pmml", "pmml", None, None, "model")  # refused by its format, before anything is read
    with pytest.raises(UsageError, match="cannot run a pmml package: its runtime starts its own JVM"):
        predict_on_spark(pmml, wine["single"], tmp_path / "c", trust=True)
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())
    wrong = run_cli("predict", str(wine["package"]), str(wine["single"]), "-o", str(tmp_path / "d"), "--master", "local[1]")
    assert wrong.returncode == 2 and "--engine spark" in wrong.stderr


def _csv_parts(frame: pd.DataFrame, folder, bounds: list[int]) -> None:
    folder.mkdir()
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        frame.iloc[start:stop].to_csv(folder / f"part-{i}.csv", index=False)


def test_csv_through_spark_equals_csv_through_the_local_engine(wine, tmp_path):
    """The same CSV rows: one file through --engine local, the same file and a folder of unequal parts through Spark."""
    from packager.spark_engine import predict_on_spark

    artifact = resolve(wine["package"])
    frame = pd.DataFrame(wine["X"], columns=[f"f{i}" for i in range(wine["X"].shape[1])])
    single = tmp_path / "rows.csv"
    frame.to_csv(single, index=False)
    _csv_parts(frame, tmp_path / "parts", [0, 60, 500, 620, len(frame)])  # Spark packs the largest part first
    predict(artifact, single, tmp_path / "local.parquet", batch_size=64)
    one = predict_on_spark(artifact, single, tmp_path / "spark-one", batch_size=64)
    many = predict_on_spark(artifact, tmp_path / "parts", tmp_path / "spark-parts", batch_size=64)
    assert one.rows == many.rows == wine["rows"] and many.partitions >= 2
    local = pd.read_parquet(tmp_path / "local.parquet")
    # same batches, same numbers; parts start new batches at their bounds, and the float32 forest then differs by up to 5.4e-7
    for name, atol in (("spark-one", 0), ("spark-parts", 1e-6)):
        spark = pd.read_parquet(tmp_path / name)
        assert list(spark.columns) == list(local.columns) and spark.dtypes.to_dict() == local.dtypes.to_dict()
        np.testing.assert_array_equal(spark["label"].to_numpy(), local["label"].to_numpy())
        np.testing.assert_allclose(spark.drop(columns="label").to_numpy(), local.drop(columns="label").to_numpy(), rtol=0, atol=atol)


def test_csv_splits_of_one_large_file_keep_their_order(wine, spark, tmp_path):
    """One CSV cut by Spark into several splits (small maxPartitionBytes): rows come back in file order."""
    from packager.spark_engine import predict_on_spark

    artifact = resolve(wine["package"])
    frame = pd.DataFrame(np.concatenate([wine["X"]] * 3), columns=[f"f{i}" for i in range(wine["X"].shape[1])])
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(path.stat().st_size // 5 + 1))
    try:
        result = predict_on_spark(artifact, path, tmp_path / "spark", batch_size=100)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert result.partitions >= 5 and result.rows == len(frame)
    predict(artifact, path, tmp_path / "local.parquet", batch_size=100)
    spark_out, local = pd.read_parquet(tmp_path / "spark"), pd.read_parquet(tmp_path / "local.parquet")
    np.testing.assert_array_equal(spark_out["label"].to_numpy(), local["label"].to_numpy())
    # splits start new batches mid-file; the float32 forest then differs by up to 5.4e-7 (a reordered row would differ by ~1)
    np.testing.assert_allclose(spark_out.drop(columns="label").to_numpy(), local.drop(columns="label").to_numpy(), rtol=0, atol=1e-6)


def test_csv_text_and_missing_values_read_as_the_local_engine_reads_them(fixtures, spark, tmp_path):
    """An empty text field stays "" (Spark alone would give null) and NA in a number column is missing, in both engines."""
    from packager.spark_engine import predict_on_spark

    fixture = fixtures["columns"]
    package = convert(fixture.model, to="onnx", sample=fixture.sample, out=tmp_path / "onnx", trust=True)
    frame = pd.read_parquet(fixture.sample)
    frame = frame[list(reversed(frame.columns))].astype(object)
    frame.loc[frame.index[3], "city"] = ""
    frame.loc[frame.index[5], "age"] = "NA"
    frame.loc[frame.index[7], "income"] = ""
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    predict(resolve(package.path), path, tmp_path / "local.parquet", batch_size=16)
    predict_on_spark(resolve(package.path), path, tmp_path / "spark", batch_size=16)
    local, spark_out = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    # the columns Spark hands its workers are the ones the local engine reads (None for "" would be the string 'None')
    from packager.batches import iter_batches, plan_feeds
    from packager.spark_engine import _read, _table_source

    source, files = _table_source(path)
    plan = plan_feeds(resolve(package.path).signature, source, notes=False)
    columns = [c for names in plan.columns.values() for c in names]
    read = _read(spark, source, files, plan.column_types(), columns).toPandas()[columns]
    pyarrow_read = pd.concat(b.to_pandas() for b in iter_batches(source, 1 << 20, plan.column_types()))[columns]
    assert read.loc[3, "city"] == "" and np.isnan(read.loc[5, "age"])
    pd.testing.assert_frame_equal(read, pyarrow_read.reset_index(drop=True), check_dtype=False)
    assert local["label"].notna().all() and np.isnan(local.drop(columns="label").to_numpy()[[5, 7]]).all()
    np.testing.assert_array_equal(spark_out["label"].to_numpy(), local["label"].to_numpy())
    np.testing.assert_array_equal(spark_out.drop(columns="label").to_numpy(), local.drop(columns="label").to_numpy())


def test_bad_csv_is_our_one_line_error(wine, tmp_path):
    from packager.spark_engine import predict_on_spark

    artifact = resolve(wine["package"])
    frame = pd.DataFrame(wine["X"], columns=[f"f{i}" for i in range(wine["X"].shape[1])])
    frame.drop(columns=["f3"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(UsageError, match=r"lacks the columns|has 12 columns|f3"):
        predict_on_spark(artifact, tmp_path / "missing.csv", tmp_path / "a")
    bad = frame.astype(object)
    bad.loc[1500, "f2"] = "abc"  # deep in the file: found by Spark's tasks, not by the header check
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputFileError, match=r"cannot read bad\.csv as csv: the value 'abc' is not a double"):
        predict_on_spark(artifact, tmp_path / "bad.csv", tmp_path / "b")
    _csv_parts(frame, tmp_path / "mixed", [0, 100, len(frame)])
    (tmp_path / "mixed" / "part-1.csv").write_text(frame.iloc[100:][list(reversed(frame.columns))].to_csv(index=False))
    with pytest.raises(InputFileError, match="do not share one header"):
        predict_on_spark(artifact, tmp_path / "mixed", tmp_path / "c")
    _csv_parts(frame, tmp_path / "short", [0, 100, len(frame)])
    with open(tmp_path / "short" / "part-1.csv", "a") as fh:  # in the second part: the header check reads the first part only
        fh.write("1.0,2.0\n")
    with pytest.raises(InputFileError, match=r"cannot read short as csv: a malformed row"):
        predict_on_spark(artifact, tmp_path / "short", tmp_path / "d")
    done = run_cli("predict", str(wine["package"]), str(tmp_path / "bad.csv"), "-o", str(tmp_path / "e"), "--engine", "spark")
    assert done.returncode == 4, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: InputFileError: cannot read bad.csv as csv: the value 'abc' is not a double"), done.stderr[-2000:]
    # no trace from Spark's task failure (the JVM's start-up banner lines are spark_session's, before the job)
    assert not any(word in done.stderr for word in ("Traceback", "\tat org.apache", "Py4J", "TaskSetManager")), done.stderr[-3000:]
    assert not any(p.name in ("a", "b", "c", "d", "e") for p in tmp_path.iterdir())
