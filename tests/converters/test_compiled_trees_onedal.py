"""The onedal runtime (converters/compiled_trees.py + converters/_onedal.py): forests, LightGBM and XGBoost run by
oneDAL's tree predictor, its model built at load from the package's data. Predictions compared with the native
library's own predict on rows the package never saw; a package holds data only; bad arrays refused before oneDAL
reads them. Needs the onedal extra (scikit-learn-intelex): skipped where it is not installed."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from packager.conversion import convert
from packager.errors import InputFileError, UnsupportedConversion
from packager.plugins import default_registry

pytest.importorskip("daal4py")

from tests.converters.test_compiled_trees import _run  # noqa: E402  (the package in its runtime, as predict runs it)


@pytest.fixture(scope="module")
def data():
    Xc, yc = load_breast_cancer(return_X_y=True)
    Xi, yi = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(yi))  # iris is sorted by class: its first 2/3 held two classes
    Xi, yi = Xi[order], yi[order]
    Xr, yr = load_diabetes(return_X_y=True)
    return {"binary": (Xc, yc), "multi": (Xi, yi), "regression": (Xr, yr)}


@pytest.mark.parametrize(
    "name, task, make",
    [
        ("forest", "binary", lambda X, y: RandomForestClassifier(30, max_depth=8, random_state=0).fit(X, y)),
        ("forest-multi", "multi", lambda X, y: RandomForestClassifier(25, max_depth=6, random_state=0).fit(X, y)),
        ("extra-reg", "regression", lambda X, y: ExtraTreesRegressor(20, max_depth=7, random_state=0).fit(X, y)),
        ("xgboost", "binary", lambda X, y: xgb.XGBClassifier(n_estimators=40, max_depth=4).fit(X, y)),
        ("xgboost-multi", "multi", lambda X, y: xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(X, y)),
        ("xgboost-reg", "regression", lambda X, y: xgb.XGBRegressor(n_estimators=30, max_depth=4).fit(X, y)),
    ],
)
def test_onedal_matches_the_native_library_on_unseen_rows(data, tmp_path, name, task, make):
    X, y = data[task]
    cut = len(X) * 2 // 3
    model = make(X[:cut], y[:cut])
    assert len(getattr(model, "classes_", ())) == {"binary": 2, "multi": 3, "regression": 0}[task]
    package = convert(model, "onedal", out=tmp_path / name, sample=X[:100])
    assert package.manifest.validation["status"] == "passed" and package.manifest.format == "onedal"
    assert not [p for p in package.path.rglob("*") if p.suffix in (".so", ".o", ".dll", ".dylib")]  # data only
    rows = X[cut:].astype(np.float32)  # as bench and validation feed them (the signature's float32)
    outputs = _run(package, rows)
    if task == "regression":
        expected = model.predict(rows)
        assert np.max(np.abs(outputs["variable"] - expected)) <= 1e-5 * max(1.0, np.abs(expected).max())
        return
    expected = model.predict_proba(rows)
    assert outputs["probabilities"].shape == expected.shape
    assert np.max(np.abs(outputs["probabilities"] - expected)) <= 1e-5
    np.testing.assert_array_equal(outputs["label"], model.predict(rows))


def test_thresholds_between_float32_values_split_float32_rows_as_scikit_learn_does(tmp_path):
    """scikit-learn splits float32 rows at float64 midpoints; oneDAL compares in float32 with <=: every row that sits
    exactly on a float32 value next to a threshold goes the way scikit-learn sends it."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 50, size=(400, 3)).astype(np.float32) / np.float32(7)  # few distinct values: midpoints between them
    y = (X[:, 0] + X[:, 1] > 7).astype(int)
    model = RandomForestClassifier(10, random_state=0).fit(X, y)
    package = convert(model, "onedal", out=tmp_path / "p", sample=X[:50])
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.children_left != -1] for e in model.estimators_]).astype(np.float32)
    on_edges = np.stack([np.nextafter(thresholds, np.float32(np.inf)), thresholds, np.nextafter(thresholds, np.float32(-np.inf))])
    rows = np.repeat(X[:1], on_edges.size, axis=0)
    rows[:, 0] = on_edges.ravel()
    outputs = _run(package, rows)
    assert np.max(np.abs(outputs["probabilities"] - model.predict_proba(rows))) <= 1e-6


def test_a_model_without_trees_is_refused_with_its_reason(data, tmp_path):
    X, y = data["binary"]
    with pytest.raises(UnsupportedConversion, match="single-output RandomForest/ExtraTrees and XGBoost models, not this Logistic"):
        convert(LogisticRegression(max_iter=50).fit(X, y), "onedal", out=tmp_path / "p", sample=X[:20])
    assert not (tmp_path / "p").exists()


def test_lightgbm_is_refused_because_its_float64_thresholds_would_move_rows(data, tmp_path):
    """The measured reason: oneDAL (float32 comparisons) moved breast_cancer rows across LightGBM's float64 splits
    (max diff 0.021 in probability). Refused at conversion, and a hand-made package holding a LightGBM text model
    is refused at load."""
    X, y = data["binary"]
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    with pytest.raises(UnsupportedConversion, match="LightGBM's thresholds are float64"):
        convert(model, "onedal", out=tmp_path / "p", sample=X[:20])
    assert not (tmp_path / "p").exists()
    model.booster_.save_model(str(tmp_path / "model.txt"))
    with pytest.raises(UnsupportedConversion, match="LightGBM's thresholds are float64"):
        default_registry().runtime("onedal").load(tmp_path / "model.txt")


def test_a_forest_file_with_a_bad_child_index_is_refused_before_onedal_reads_it(data, tmp_path):
    X, y = data["binary"]
    package = convert(RandomForestClassifier(3, max_depth=3, random_state=0).fit(X, y), "onedal", out=tmp_path / "p", sample=X[:20])
    path = package.path / package.manifest.model_file
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["children_left"][0] = 10_000  # would index outside the tree
    np.savez(path, **arrays)
    with pytest.raises(InputFileError, match="a child index points outside the tree"):
        default_registry().runtime("onedal").load(path)


def test_a_sandboxed_bench_child_runs_the_onedal_package(data, tmp_path):
    """Where optimize measures it: a fresh sandboxed child loads oneDAL (its libraries outside site-packages) and
    builds the model from the package's arrays; nothing is shared from the parent (nothing was compiled)."""
    import pandas as pd

    from packager.bench import run_bench
    from packager.requests import BenchSettings

    X, y = data["binary"]
    package = convert(RandomForestClassifier(10, max_depth=5, random_state=0).fit(X, y), "onedal", out=tmp_path / "p", sample=X[:50])
    assert default_registry().runtime("onedal").shared_with_child(package.path / package.manifest.model_file) == []
    pd.DataFrame(X.astype(np.float32)).rename(columns=str).to_parquet(tmp_path / "rows.parquet")
    report = run_bench([str(package.path)], tmp_path / "rows.parquet", BenchSettings(batch_sizes=(64,), min_seconds=0.05))
    (row,) = report.artifacts
    assert not row.error and row.format == "onedal" and row.measurements[0].rows_per_second > 0
