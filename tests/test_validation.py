"""validation.py, table-driven: every criterion in both directions, NaN/inf on either side, (n,) against (n, 1), ties in
top-1, output kinds, declared criteria; and the data sources of real conversions."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from packager.errors import PluginError
from packager.validation import (
    FLOAT32,
    FP16,
    INT8,
    Agreement,
    Cosine,
    Exact,
    OutputKind,
    RelativeToSpread,
    Tolerance,
    TopK,
    compare_one,
    compare_outputs,
    criteria_table,
    criterion_for,
    infer_kind,
)

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((200, 10)) * 3
REG = RNG.standard_normal(200) * 70 + 150
EMB = RNG.standard_normal((50, 32))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
NAN_REG = REG.copy()
NAN_REG[3] = np.nan
INF_REG = REG.copy()
INF_REG[4] = np.inf
SWAPPED = LOGITS.copy()
SWAPPED[:, [0, 1]] = SWAPPED[:, [1, 0]]

CASES = [
    # (case, kind, criterion, expected, actual, passes)
    ("labels equal", OutputKind.LABELS, Agreement(1.0), np.array(["a", "b"] * 50), np.array(["a", "b"] * 50), True),
    ("labels 2% off fail 99%", OutputKind.LABELS, Agreement(0.99), np.arange(100) % 3, np.r_[np.arange(98) % 3, 7, 7], False),
    ("labels 2% off pass 95%", OutputKind.LABELS, Agreement(0.95), np.arange(100) % 3, np.r_[np.arange(98) % 3, 7, 7], True),
    ("bool labels vs onnx ints", OutputKind.LABELS, Agreement(1.0), np.array([True, False] * 5), np.array([1, 0] * 5), True),
    ("probabilities close", OutputKind.PROBABILITIES, Tolerance(1e-4, 0, 1.0), PROBS, PROBS + 5e-5, True),
    ("probabilities off", OutputKind.PROBABILITIES, Tolerance(1e-4, 0, 1.0), PROBS, PROBS + 1e-3, False),
    ("logits shifted, same ranking", OutputKind.SCORES, FP16[OutputKind.SCORES], LOGITS, LOGITS + 0.02, True),
    ("logits with two classes swapped", OutputKind.SCORES, FP16[OutputKind.SCORES], LOGITS, SWAPPED, False),
    ("fp32 logits bounded by spread", OutputKind.SCORES, FLOAT32[OutputKind.SCORES], LOGITS, LOGITS + 0.02, False),
    ("regression within 2.5% of spread", OutputKind.REGRESSION, INT8[OutputKind.REGRESSION], REG, REG + 1.86, True),
    ("regression 40% of spread", OutputKind.REGRESSION, INT8[OutputKind.REGRESSION], REG, REG + 30 * np.sign(REG - 150), False),
    ("(n,) against (n, 1)", OutputKind.REGRESSION, RelativeToSpread(1e-6), REG, REG.reshape(-1, 1), True),
    ("(n, 1) against (n,)", OutputKind.REGRESSION, RelativeToSpread(1e-6), REG.reshape(-1, 1), REG, True),
    ("NaN on both sides", OutputKind.REGRESSION, RelativeToSpread(1e-6), NAN_REG, NAN_REG.copy(), True),
    ("NaN only in expected", OutputKind.REGRESSION, RelativeToSpread(1e-6), NAN_REG, REG, False),
    ("NaN only in actual", OutputKind.REGRESSION, RelativeToSpread(1e-6), REG, NAN_REG, False),
    ("inf on both sides", OutputKind.REGRESSION, RelativeToSpread(1e-6), INF_REG, INF_REG.copy(), True),
    ("inf against -inf", OutputKind.REGRESSION, RelativeToSpread(1e-6), INF_REG, np.where(np.isinf(INF_REG), -np.inf, INF_REG), False),
    ("embeddings near", OutputKind.EMBEDDING, Cosine(0.999), EMB, EMB * 1.5 + 1e-4, True),
    ("embeddings one row flipped", OutputKind.EMBEDDING, Cosine(0.999), EMB, np.r_[EMB[:1] * -1, EMB[1:]], False),
    ("integers equal", OutputKind.INTEGER, Exact(), np.arange(20), np.arange(20), True),
    ("integers off by one", OutputKind.INTEGER, Exact(), np.arange(20), np.r_[np.arange(19), 0], False),
    ("shape mismatch", OutputKind.REGRESSION, RelativeToSpread(1.0), REG, REG[:-1], False),
]


@pytest.mark.parametrize("case,kind,criterion,expected,actual,passes", CASES, ids=[c[0] for c in CASES])
def test_criterion(case, kind, criterion, expected, actual, passes):
    result = compare_one("out", expected, actual, kind, criterion)
    assert result.passed is passes, (case, result.note)
    assert bool(result.note) is not passes or result.note  # a failure always says why
    if not passes and "shape" not in result.note:
        assert result.failing_rows, "a failure lists the rows that fail"
        assert all({"row", "expected", "actual"} <= set(r) for r in result.failing_rows)


def test_failing_rows_name_the_rows():
    actual = REG.copy()
    actual[[7, 42]] += 100
    result = compare_one("y", REG, actual, OutputKind.REGRESSION, RelativeToSpread(0.1))
    assert [r["row"] for r in result.failing_rows] == [7, 42]
    assert result.failing_rows[0]["expected"] == pytest.approx(REG[7], abs=1e-5)


def test_top1_ties_are_excused_only_for_labels_on_tied_rows():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    expected = {"label": np.array([0, 0, 1]), "probabilities": probabilities}
    actual = {"label": np.array([1, 0, 1]), "probabilities": probabilities}
    kinds = {"label": OutputKind.LABELS, "probabilities": OutputKind.PROBABILITIES}
    criteria = {"label": Agreement(1.0), "probabilities": Tolerance(1e-4, 0, 1.0)}
    label, _ = compare_outputs(expected, actual, criteria, kinds)
    assert label.passed and label.agreement == pytest.approx(2 / 3) and "tie" in label.note
    actual["label"] = np.array([0, 1, 1])  # a flip on a confident row is not excused
    label, _ = compare_outputs(expected, actual, criteria, kinds)
    assert not label.passed


def test_confident_rows_only_for_top1():
    """A row whose two best logits nearly tie may flip under fp16; a confident row may not."""
    logits = np.array([[5.0, 4.999, 0.0], [5.0, 0.0, -3.0]] * 50)
    flipped_tie = logits.copy()
    flipped_tie[0] = [4.999, 5.0, 0.0]
    assert compare_one("s", logits, flipped_tie, OutputKind.SCORES, TopK(k=2, min_top1=1.0, min_overlap=0.9)).passed
    flipped_confident = logits.copy()
    flipped_confident[1] = [0.0, 5.0, -3.0]
    assert not compare_one("s", logits, flipped_confident, OutputKind.SCORES, TopK(k=2, min_top1=1.0, min_overlap=0.9)).passed


def test_cast_effect_is_reported_not_blamed():
    full = {"y": REG}
    cast = {"y": REG + 3.0}  # what the source gives on float32 inputs
    (result,) = compare_outputs(full, {"y": REG + 3.0}, {"y": RelativeToSpread(1e-4)}, {"y": OutputKind.REGRESSION}, cast_expected=cast)
    assert result.passed and result.cast_effect == pytest.approx(3.0) and "cast_effect" in result.note
    (result,) = compare_outputs(full, {"y": REG + 9.0}, {"y": RelativeToSpread(1e-4)}, {"y": OutputKind.REGRESSION}, cast_expected=cast)
    assert not result.passed and result.cast_effect == pytest.approx(3.0)


@pytest.mark.parametrize(
    "values,kind",
    [
        (np.array(["a", "b"]), OutputKind.LABELS),
        (np.array([True]), OutputKind.LABELS),
        (np.arange(3), OutputKind.INTEGER),
        (PROBS, OutputKind.PROBABILITIES),
        (LOGITS, OutputKind.SCORES),
        (REG, OutputKind.REGRESSION),
        (REG.reshape(-1, 1), OutputKind.REGRESSION),
        (EMB / np.linalg.norm(EMB, axis=1, keepdims=True), OutputKind.EMBEDDING),
        (np.zeros((2, 4, 8)), OutputKind.EMBEDDING),
    ],
)
def test_infer_kind(values, kind):
    assert infer_kind(values) is kind


def test_a_format_without_criteria_is_an_error_not_exact_match():
    with pytest.raises(PluginError, match="declares no validation criteria"):
        criterion_for(None, "toy", OutputKind.REGRESSION, None)
    table = criteria_table({None: FLOAT32})
    with pytest.raises(PluginError, match="no criterion for scores outputs under quantization fp16"):
        criterion_for(table, "toy", OutputKind.SCORES, "fp16")
    with pytest.raises(PluginError, match="lack output kinds"):
        criteria_table({None: {OutputKind.LABELS: Agreement()}})


def test_every_runtime_that_executes_declares_criteria():
    from packager.plugins import default_registry

    registry = default_registry()
    for fmt, plugin in registry.runtimes.items():
        assert plugin.criteria, f"{fmt} declares no criteria"
        assert all((kind, None) in plugin.criteria for kind in OutputKind), fmt


# ---------------------------------------------------------------- data sources, end to end

@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return tmp_path_factory.mktemp("diabetes"), X, y


def _save(folder, name, model):
    path = folder / f"{name}.pkl"
    path.write_bytes(pickle.dumps(model))
    return path


def test_diabetes_mlp_int8_passes_on_fitted_statistics(diabetes, tmp_path):
    """The headline command, without --sample: judged on rows from the scaler's statistics, relative to the spread."""
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import convert

    folder, X, y = diabetes
    model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(256, 256), max_iter=300, random_state=0)).fit(X, y)
    package = convert(str(_save(folder, "mlp", model)), to="onnx", quantize="dynamic", out=tmp_path / "q")
    report = package.manifest.validation
    assert report["status"] == "passed" and report["data_source"] == "fitted-statistics" and report["samples"] == 200
    (variable,) = report["outputs"]
    assert variable["kind"] == "regression" and variable["figures"]["r2"] > 0.99 and report["batch_sizes"] == [1, 199]


def test_float64_gap_is_reported(diabetes, tmp_path):
    """A tree ensemble fed float32: the source's own predictions move when its float64 input is cast (measured on the real
    diabetes rows: up to 16.1, while the ONNX graph matches the float64 source to 4e-5). Main compared both on float32."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from packager.conversion import convert

    folder, X, y = diabetes
    model = HistGradientBoostingRegressor(random_state=0).fit(X, y)
    X_test = X  # the user's rows, float64
    package = convert(model, to="onnx", sample=X_test, out=tmp_path / "gbr")
    (variable,) = package.manifest.validation["outputs"]
    assert package.manifest.validation["data_source"] == "sample"
    assert variable["cast_effect"] > 1.0 and variable["max_abs"] < 1e-3
    direct = np.abs(model.predict(X_test) - model.predict(X_test.astype(np.float32).astype(np.float64))).max()
    assert variable["cast_effect"] == pytest.approx(direct)


def test_nan_pipeline_default_check_includes_nan_rows(diabetes, tmp_path):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import gather_evidence, load_source

    folder, X, y = diabetes
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(X, (y > 140).astype(int))
    evidence = gather_evidence(load_source(model))
    assert evidence.data_source == "fitted-statistics" and np.isnan(evidence.feeds["X"]).any()


def test_static_int8_is_validated_on_the_calibration_rows(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from packager.conversion import convert

    X, y = load_digits(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(X[:1500], y[:1500])
    np.save(tmp_path / "rows.npy", X[1500:])
    package = convert(model, to="onnx", quantize="static", calibration=tmp_path / "rows.npy", out=tmp_path / "q")
    report = package.manifest.validation
    assert report["data_source"] == "calibration" and report["samples"] == len(X) - 1500


def test_synthetic_data_says_so(tmp_path):
    from sklearn.linear_model import LinearRegression

    from packager.conversion import convert

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    package = convert(LinearRegression().fit(X, X @ [1.0, 2.0, 3.0]), to="onnx", out=tmp_path / "lr")
    report = package.manifest.validation
    assert report["data_source"] == "synthetic" and "--sample" in report["note"]


def test_auto_falls_back_to_fp32_when_int8_fails_validation(diabetes, tmp_path):
    """A tolerance fp32 meets (diff ~2e-5) and int8/fp16 do not: auto keeps fp32 instead of exiting 9."""
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.conversion import convert

    folder, X, y = diabetes
    model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64,), max_iter=200, random_state=0)).fit(X, y)
    package = convert(model, to="onnx", quantize="auto", tolerance={"variable": Tolerance(1e-3, 0, 0)}, out=tmp_path / "auto")
    quant = package.manifest.quantization
    assert not quant.applied and package.manifest.validation["status"] == "passed"
    assert [(a["mode"], a["kept"]) for a in quant.attempts][:2] == [("dynamic", False), ("fp16", False)]
    assert "failed validation" in quant.attempts[0]["why"]
