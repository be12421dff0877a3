"""The acceptance matrix of the boosting libraries (issue 15): XGBoost / LightGBM / CatBoost classifier and regressor, each
alone and behind a ColumnTransformer over mixed pandas columns (numbers scaled, a string column one-hot encoded), converted
to ONNX and PMML, and each artifact re-checked here in its own runtime (onnxruntime, JPMML), independently of packager's
report, against ``model.predict`` / ``predict_proba`` on the float64 held-out rows the user has.

Shared by ``tests/converters/test_boosting_matrix.py`` (one test per cell) and ``benchmarks/boosting_coverage.py`` (the
table in benchmarks/results/boosting_coverage.md), so the test and the published table cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# the unquantized criteria of packager.validation: labels agree on every row, regression within 1e-4 of the output's spread,
# probabilities within 1e-4
MAX_SPREAD_RATIO = 1e-4
MAX_PROBABILITY_DIFF = 1e-4
LIBRARIES = ("xgboost", "lightgbm", "catboost")
KINDS = ("classifier", "regressor")
SHAPES = ("alone", "pipeline")
TARGETS = ("onnx", "pmml")
# what is refused by design, and the words the refusal says (alone: no catboost -> pmml converter is registered; in a
# pipeline: packager.converters.catboost.refuse_pmml); anything else must pass
REFUSED = {("catboost", "pmml", "alone"): "no converter from catboost to pmml",
           ("catboost", "pmml", "pipeline"): "has no CatBoost converter"}


@dataclass(frozen=True)
class Case:
    library: str
    kind: str
    shape: str

    @property
    def id(self) -> str:
        return f"{self.library}-{self.kind}-{self.shape}"


@dataclass(frozen=True)
class Outcome:
    """``status``: "pass" (converted, packager validated it and the independent re-check agrees), "refused" (a
    PackagerError before an artifact existed) or "fail"; ``detail`` gives the figures or the one-line reason."""

    status: str
    detail: str
    label_agreement: float | None = None
    max_probability_diff: float | None = None
    max_regression_ratio: float | None = None


CASES = tuple(Case(library, kind, shape) for library in LIBRARIES for kind in KINDS for shape in SHAPES)


def _estimator(library: str, kind: str) -> Any:
    if library == "xgboost":
        import xgboost as xgb

        return (xgb.XGBClassifier if kind == "classifier" else xgb.XGBRegressor)(n_estimators=30, max_depth=3)
    if library == "lightgbm":
        import lightgbm as lgb

        return (lgb.LGBMClassifier if kind == "classifier" else lgb.LGBMRegressor)(n_estimators=30, verbose=-1)
    import catboost as cb

    return (cb.CatBoostClassifier if kind == "classifier" else cb.CatBoostRegressor)(iterations=30, verbose=0,
                                                                                     allow_writing_files=False, thread_count=1)


def data(kind: str, shape: str):
    """wine (3 classes) for classifiers, diabetes for regressors; the pipeline's frame swaps one numeric column for a
    string column (its terciles). Held-out quarter as the sample. Wine's features repeat values, so held-out rows sit on
    training split points: the case where float32 preprocessing moved XGBoost rows."""
    import pandas as pd
    from sklearn.datasets import load_diabetes, load_wine
    from sklearn.model_selection import train_test_split

    X, y = (load_wine if kind == "classifier" else load_diabetes)(return_X_y=True, as_frame=True)
    X = X.rename(columns=lambda c: c.replace("/", "_"))  # skl2onnx renames "od280/od315..." inputs
    if shape == "pipeline":
        column = "alcohol" if kind == "classifier" else "bmi"
        X = X.copy()
        X["band"] = pd.qcut(X.pop(column), 3, labels=["low", "mid", "high"]).astype(str)
    return train_test_split(X, y, test_size=0.25, random_state=0)


def build(case: Case):
    """(fitted model, held-out frame)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X_train, X_test, y_train, _ = data(case.kind, case.shape)
    estimator = _estimator(case.library, case.kind)
    if case.shape == "alone":
        return estimator.fit(X_train, y_train), X_test
    numeric = [c for c in X_train.columns if c != "band"]
    columns = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["band"])])
    return make_pipeline(columns, estimator).fit(X_train, y_train), X_test


def run(case: Case, target: str, out: Path) -> Outcome:
    """Convert through packager, then score the artifact in its runtime and compare with the source on float64 rows."""
    model, X_test = build(case)
    return check(model, X_test, case.kind, target, out)


def check(model: Any, X_test: Any, kind: str, target: str, out: Path) -> Outcome:
    """Any fitted model (a classifier or regressor) through packager to ``target``, re-checked in the target's runtime
    (ONNX, PMML; a native file is scored by its library's predict in packager's validation only)."""
    import numpy as np

    from packager.conversion import convert
    from packager.errors import PackagerError

    try:
        package = convert(model, to=target, sample=X_test, out=out)
    except PackagerError as exc:
        return Outcome("refused", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if package.validation.get("status") != "passed":
        return Outcome("fail", f"packager validation {package.validation.get('status')}")
    if target not in ("onnx", "pmml"):
        return Outcome("pass", f"validated by packager in {target} ({_summary(package.validation)})")
    score: Callable = _score_onnx if target == "onnx" else _score_pmml
    label, probabilities, values = score(package, X_test)
    if kind == "regressor":
        expected = np.asarray(model.predict(X_test), dtype=np.float64).reshape(-1)
        ratio = float(np.abs(values.reshape(-1) - expected).max() / (expected.max() - expected.min()))
        status = "pass" if ratio <= MAX_SPREAD_RATIO else "fail"
        return Outcome(status, f"max diff {ratio:.1e} of the spread", max_regression_ratio=ratio)
    expected_label = np.asarray(model.predict(X_test)).reshape(-1)
    agreement = float((np.asarray(label).reshape(-1).astype(expected_label.dtype) == expected_label).mean())
    diff = float(np.abs(probabilities - model.predict_proba(X_test)).max())
    status = "pass" if agreement == 1.0 and diff <= MAX_PROBABILITY_DIFF else "fail"
    return Outcome(status, f"labels {agreement:.0%}, probabilities max diff {diff:.1e}", agreement, diff)


def _summary(validation: Any) -> str:
    """packager's own figures per output: label agreement, max abs diff."""
    parts = []
    for output in validation.get("outputs") or []:
        figures = output.get("figures") or {}
        parts.append(", ".join(f"{k} {v:.2g}" for k, v in figures.items() if isinstance(v, (int, float))))
    return "; ".join(p for p in parts if p) or str(validation.get("status"))


def _score_onnx(package: Any, X_test: Any):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        dtype = object if spec.type == "tensor(string)" else np.float64 if spec.type == "tensor(double)" else np.float32
        # one matrix input takes every column in order; a columnar graph takes one input per column
        values = X_test.to_numpy() if len(session.get_inputs()) == 1 else X_test[[spec.name]].to_numpy()
        feeds[spec.name] = values.astype(dtype)
    outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, feeds), strict=True)}
    return outputs.get("label"), outputs.get("probabilities"), outputs.get("variable")


def _score_pmml(package: Any, X_test: Any):
    import jpmml_evaluator
    import numpy as np
    from packager.converters.pmml import pmml_field_names

    evaluator = jpmml_evaluator.make_evaluator(str(package.model_path), backend="jpype").verify()
    frame = X_test.reset_index(drop=True)
    frame.columns = pmml_field_names(package.manifest.signature)
    result = evaluator.evaluateAll(frame)
    probabilities = [c for c in result.columns if str(c).startswith("probability(")]
    if probabilities:
        ordered = sorted(probabilities, key=lambda c: float(str(c)[len("probability("):-1]))
        return result["y"].to_numpy(), result[ordered].to_numpy(np.float64), None
    return None, None, result["y"].to_numpy(np.float64)
