"""XGBoost / LightGBM / CatBoost estimators x targets: converted and validated (with the figures), or refused with the
reason. The acceptance cells (classifier and regressor, alone and in a ColumnTransformer pipeline over mixed pandas
columns, ONNX and PMML) are tests/converters/boosting_matrix.py's, re-checked in onnxruntime / JPMML against float64
``predict``; further estimators (random-forest modes, binary objectives) and the native targets are added here.

    python benchmarks/boosting_coverage.py [OUT_DIR]     # default: benchmarks/results/  (needs Java for PMML)

Writes boosting_coverage.md and boosting_coverage.json. A non-PackagerError from packager is a bug, listed "UNEXPLAINED".
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

NATIVE = {"xgboost": "xgboost-json", "lightgbm": "lightgbm", "catboost": "catboost"}
TARGETS = ("onnx", "pmml", "native")


def _extra_models():
    """(library, name, kind, shape, factory): estimators beyond the acceptance cells."""
    import catboost as cb
    import lightgbm as lgb
    import xgboost as xgb

    return [
        ("xgboost", "XGBRFClassifier", "classifier", "alone", lambda: xgb.XGBRFClassifier(n_estimators=20, max_depth=3)),
        ("xgboost", "XGBRFRegressor", "regressor", "alone", lambda: xgb.XGBRFRegressor(n_estimators=20, max_depth=3)),
        ("xgboost", "XGBClassifier (binary)", "binary", "alone", lambda: xgb.XGBClassifier(n_estimators=30, max_depth=3)),
        ("lightgbm", "LGBMClassifier (binary)", "binary", "alone", lambda: lgb.LGBMClassifier(n_estimators=30, verbose=-1)),
        ("lightgbm", "LGBMRegressor (rf)", "regressor", "alone",
         lambda: lgb.LGBMRegressor(boosting_type="rf", n_estimators=20, bagging_freq=1, bagging_fraction=0.7, verbose=-1)),
        ("catboost", "CatBoostClassifier (binary)", "binary", "alone",
         lambda: cb.CatBoostClassifier(iterations=30, verbose=0, allow_writing_files=False, thread_count=1)),
        ("xgboost", "XGBClassifier (binary)", "binary", "pipeline", lambda: xgb.XGBClassifier(n_estimators=30, max_depth=3)),
        ("catboost", "CatBoostClassifier (binary)", "binary", "pipeline",
         lambda: cb.CatBoostClassifier(iterations=30, verbose=0, allow_writing_files=False, thread_count=1)),
    ]


def _binary_data(shape: str):
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    if shape == "pipeline":
        X = X.copy()
        X["band"] = pd.qcut(X.pop("mean texture"), 3, labels=["low", "mid", "high"]).astype(str)
    return train_test_split(X, y, test_size=0.25, random_state=0)


def _fit(estimator: Any, kind: str, shape: str):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from tests.converters.boosting_matrix import data

    X_train, X_test, y_train, _ = _binary_data(shape) if kind == "binary" else data(kind, shape)
    if shape == "alone":
        return estimator.fit(X_train, y_train), X_test
    numeric = [c for c in X_train.columns if c != "band"]
    columns = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["band"])])
    return make_pipeline(columns, estimator).fit(X_train, y_train), X_test


def _rows():
    from tests.converters.boosting_matrix import CASES, _estimator

    for case in CASES:
        name = type(_estimator(case.library, case.kind)).__name__
        yield case.library, name, case.kind, case.shape, (lambda c=case: _estimator(c.library, c.kind))
    yield from _extra_models()


def main(out_dir: Path) -> dict:
    from packager.errors import PackagerError
    from tests.converters.boosting_matrix import check

    warnings.simplefilter("ignore")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (library, name, kind, shape, make) in enumerate(_rows()):
            model, X_test = _fit(make(), kind, shape)
            for target in TARGETS:
                if target == "native" and shape == "pipeline":
                    continue  # a native file holds the booster only: refused by design, listed once in the README
                fmt = NATIVE[library] if target == "native" else target
                started = time.perf_counter()
                try:
                    outcome = check(model, X_test, "regressor" if kind == "regressor" else "classifier", fmt, Path(tmp) / f"{index}-{fmt}")
                    status, detail = outcome.status, outcome.detail
                except PackagerError as exc:  # raised by the independent re-check's own loading
                    status, detail = "refused", f"{type(exc).__name__}: {exc.one_line()}"
                except Exception as exc:
                    status, detail = "UNEXPLAINED", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                row = {"library": library, "estimator": name, "task": kind, "shape": shape, "target": fmt, "status": status,
                       "detail": detail, "seconds": round(time.perf_counter() - started, 2)}
                results.append(row)
                print(f"{library:9} {name:28} {shape:8} {fmt:13} {status:8} {detail[:110]}", flush=True)
    report = {"versions": _versions(), "results": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "boosting_coverage.json").write_text(json.dumps(report, indent=2))
    (out_dir / "boosting_coverage.md").write_text(_markdown(report))
    return report


def _versions() -> dict:
    from packager.deps import version_of

    names = ("xgboost", "lightgbm", "catboost", "onnxmltools", "skl2onnx", "onnxruntime", "sklearn2pmml", "scikit-learn")
    return {n: version_of(n) for n in names}


def _markdown(report: dict) -> str:
    from collections import Counter

    rows = report["results"]
    counts = Counter(r["status"] for r in rows)
    lines = ["# Boosting libraries -> targets coverage", "",
             "Generated by `python benchmarks/boosting_coverage.py`. " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
             "", "Data: wine (3 classes), breast cancer (binary), diabetes (regression), held-out quarter. `pipeline`: ColumnTransformer "
             "(StandardScaler on numbers, OneHotEncoder on a string column) + the booster. ONNX and PMML are re-scored in onnxruntime / "
             "JPMML against `predict`/`predict_proba` on float64 rows (pass: labels 100%, probabilities within 1e-4, regression within "
             "1e-4 of the spread); native files are validated by packager in the library itself.", "",
             "| outcome | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in sorted(counts.items())], "",
             "| library | estimator | task | shape | target | outcome | detail |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "/")[:220]
        lines.append(f"| {r['library']} | {r['estimator']} | {r['task']} | {r['shape']} | {r['target']} | {r['status']} | {detail} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results")
