"""Spark ML pipelines fitted on scikit-learn's bundled datasets -> PMML and ONNX, validated against Spark's own
predictions on the same rows, and each artifact re-run independently of packager (onnxruntime, JPMML)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from packager.errors import UnsupportedConversion

pytestmark = [pytest.mark.spark, pytest.mark.java]


def _frame(loader, category_from: str):
    data = loader(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace("/", "_").replace(" ", "_"))
    frame = frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].astype("float64")
    column = category_from.replace(" ", "_")
    # a string column for the StringIndexer: the feature's tercile, as words (what a real table's category looks like)
    frame["band"] = np.select([frame[column] < frame[column].quantile(1 / 3), frame[column] < frame[column].quantile(2 / 3)],
                              ["low", "mid"], "high")
    return frame


def _fit(spark, frame, estimator, folder, one_hot=False):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler

    numeric = [c for c in frame.columns if c not in ("label", "band")]
    encode = [OneHotEncoder(inputCol="band_index", outputCol="band_onehot", dropLast=False)] if one_hot else []
    pipeline = Pipeline(stages=[StringIndexer(inputCol="band", outputCol="band_index"), *encode,
                                VectorAssembler(inputCols=numeric + ["band_onehot" if one_hot else "band_index"], outputCol="features"),
                                estimator])
    model = pipeline.fit(spark.createDataFrame(frame))
    model.write().overwrite().save(str(folder))
    sample = folder.parent / f"{folder.name}.parquet"
    frame.drop(columns=["label"]).to_parquet(sample)
    return folder, sample


@pytest.fixture(scope="module")
def wine_forest(spark, tmp_path_factory):
    from pyspark.ml.classification import RandomForestClassifier
    from sklearn.datasets import load_wine

    return _fit(spark, _frame(load_wine, "alcohol"), RandomForestClassifier(numTrees=20, maxDepth=5, seed=1),
                tmp_path_factory.mktemp("spark") / "wine_forest")


@pytest.fixture(scope="module")
def cancer_logistic(spark, tmp_path_factory):
    from pyspark.ml.classification import LogisticRegression
    from sklearn.datasets import load_breast_cancer

    return _fit(spark, _frame(load_breast_cancer, "mean radius"), LogisticRegression(maxIter=50, regParam=0.01),
                tmp_path_factory.mktemp("spark") / "cancer_logistic", one_hot=True)


@pytest.fixture(scope="module")
def wine_forest_one_hot(spark, tmp_path_factory):
    from pyspark.ml.classification import RandomForestClassifier
    from sklearn.datasets import load_wine

    return _fit(spark, _frame(load_wine, "alcohol"), RandomForestClassifier(numTrees=20, maxDepth=5, seed=1),
                tmp_path_factory.mktemp("spark") / "wine_forest_one_hot", one_hot=True)


@pytest.mark.parametrize("which, to", [("wine_forest_one_hot", "pmml"), ("cancer_logistic", "pmml"), ("cancer_logistic", "onnx")])
def test_pipeline_converts_and_validates_on_real_rows(request, which, to, tmp_path):
    from packager.conversion import convert

    folder, sample = request.getfixturevalue(which)
    package = convert(folder, to=to, sample=sample, out=tmp_path / "pkg", trust=True)
    report = package.validation
    assert report["status"] == "passed", report
    assert report["data_source"] == "sample" and report["samples"] >= 178
    by_name = {o["name"]: o for o in report["outputs"]}
    assert by_name["label"]["agreement"] == 1.0
    assert by_name["probabilities"]["max_abs"] < 1e-4
    print(which, to, {n: (o["agreement"], o["max_abs"]) for n, o in by_name.items()})
    manifest = json.loads((package.path / "manifest.json").read_text())
    assert manifest["source"]["format"] == "spark"
    assert [s["name"] for s in manifest["signature"]["inputs"]][0] == "band"  # the StringIndexer's column, read first



def test_forest_with_categorical_splits_is_pmml_only(wine_forest, tmp_path):
    """Spark treats a StringIndexer column as categorical; onnxmltools would write its splits as thresholds."""
    from packager.conversion import convert

    folder, sample = wine_forest
    with pytest.raises(UnsupportedConversion, match=r"categorical splits \(features \[13\]"):
        convert(folder, to="onnx", sample=sample, out=tmp_path / "onnx", trust=True)
    assert not (tmp_path / "onnx").exists()
    report = convert(folder, to="pmml", sample=sample, out=tmp_path / "pmml", trust=True).validation
    assert report["status"] == "passed" and {o["name"]: o["agreement"] for o in report["outputs"]}["label"] == 1.0


def test_mleap_from_spark_is_refused_with_the_reason(wine_forest, tmp_path):
    from packager.conversion import convert

    folder, _ = wine_forest
    with pytest.raises(UnsupportedConversion, match="Maven"):
        convert(folder, to="mleap", out=tmp_path / "m", trust=True)
