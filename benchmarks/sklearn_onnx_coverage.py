"""Walk every scikit-learn classifier, regressor and transformer; try ONNX on each with default
parameters on a small dataset; write the table converted / validated / refused-with-clear-error.

    python benchmarks/sklearn_onnx_coverage.py [OUT_DIR]     # default: benchmarks/results/

No estimator may end in an unexplained traceback: a non-PackagerError from packager is a bug and
is listed as "UNEXPLAINED".
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

VALIDATED, CONVERTED_NOT_VALID, REFUSED, NOT_FITTED, UNEXPLAINED = (
    "converted+validated", "converted, validation failed (clear error)", "refused with clear error",
    "cannot fit with defaults on generic data", "UNEXPLAINED",
)


def _datasets():
    import numpy as np
    from sklearn.datasets import make_classification, make_regression

    Xc, yc = make_classification(n_samples=240, n_features=8, n_informative=5, n_classes=3, random_state=0)
    Xr, yr = make_regression(n_samples=240, n_features=8, noise=0.1, random_state=0)
    return {
        "classifier": (np.abs(Xc).astype(np.float32), yc),
        "regressor": (np.abs(Xr).astype(np.float32), yr),
        "transformer": (np.abs(Xc).astype(np.float32), yc),
    }


def _construct(name: str, cls, kind: str, X, y):
    """Defaults where the estimator has them; the smallest sensible arguments where it requires some."""
    import inspect

    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    regression = kind == "regressor" or "Regressor" in name
    base = Ridge() if regression else LogisticRegression(max_iter=500)
    pair = [("linear", base), ("tree", DecisionTreeRegressor(max_depth=3) if regression else DecisionTreeClassifier(max_depth=3))]
    required = {
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD
    }
    args = {}
    for param in required:
        args[param] = {"estimator": base, "estimators": pair, "transformers": [("scale", StandardScaler(), [0, 1, 2, 3])],
                       "transformer_list": [("scale", StandardScaler())], "dictionary": np.eye(8)[:4]}.get(param)
    extra = {"CCA": {"n_components": 1}, "PLSCanonical": {"n_components": 1}, "PLSSVD": {"n_components": 1},
             "GaussianRandomProjection": {"n_components": 4}, "SparseRandomProjection": {"n_components": 4}}.get(name, {})
    model = cls(**args, **extra)
    fit_X, fit_y, sample = X[:160], y[:160], X[160:]
    if name.startswith("MultiTask"):
        fit_y = np.c_[y[:160], y[:160] * 0.5]
    if name in ("GammaRegressor", "PoissonRegressor"):
        fit_y = np.abs(fit_y) + 1
    if name == "IsotonicRegression":
        fit_X, sample = X[:160, :1], X[160:, :1]
    return model, fit_X, fit_y, sample


def walk(out_dir: Path) -> list[dict]:
    from sklearn.utils import all_estimators

    from packager.conversion import convert
    from packager.errors import PackagerError, ValidationFailed

    data = _datasets()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for kind in ("classifier", "regressor", "transformer"):
            X, y = data[kind]
            for name, cls in all_estimators(type_filter=kind):
                started = time.perf_counter()
                row = {"estimator": name, "kind": kind}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model, fit_X, fit_y, sample = _construct(name, cls, kind, X, y)
                        model.fit(fit_X, fit_y)
                except Exception as exc:
                    row.update(status=NOT_FITTED, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:140] if str(exc) else ''}")
                    rows.append(row)
                    continue
                try:
                    package = convert(model, to="onnx", sample=sample, out=Path(work) / f"{kind}-{name}")
                    row.update(status=VALIDATED, detail=_max_diff(package.manifest.validation))
                except ValidationFailed as exc:
                    row.update(status=CONVERTED_NOT_VALID, detail=exc.one_line()[:200])
                except PackagerError as exc:
                    row.update(status=REFUSED, detail=exc.one_line()[:200])
                except Exception as exc:  # a bug in packager: must never happen
                    row.update(status=UNEXPLAINED, detail=f"{type(exc).__name__}: {exc}"[:300])
                row["seconds"] = round(time.perf_counter() - started, 2)
                rows.append(row)
    _write(out_dir, rows)
    return rows


def _max_diff(report: dict) -> str:
    parts = []
    for o in report["outputs"]:
        if o["max_abs"] is not None:
            parts.append(f"{o['name']} max|diff| {o['max_abs']:.1e}")
        elif o["agreement"] is not None:
            parts.append(f"{o['name']} agree {o['agreement']:.0%}")
    return "; ".join(parts)


def _write(out_dir: Path, rows: list[dict]) -> None:
    import sklearn

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = Counter(r["status"] for r in rows)
    (out_dir / "sklearn_onnx_coverage.json").write_text(
        json.dumps({"sklearn": sklearn.__version__, "counts": counts, "rows": rows}, indent=2)
    )
    lines = [f"# scikit-learn {sklearn.__version__} -> ONNX coverage", "", "| outcome | count |", "|---|---|"]
    lines += [f"| {status} | {count} |" for status, count in counts.most_common()]
    lines += ["", "| estimator | kind | outcome | detail |", "|---|---|---|---|"]
    lines += [f"| {r['estimator']} | {r['kind']} | {r['status']} | {r['detail'].replace('|', '/')} |" for r in rows]
    (out_dir / "sklearn_onnx_coverage.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    result = walk(target)
    for status, count in Counter(r["status"] for r in result).most_common():
        print(f"{count:4d}  {status}")
    sys.exit(1 if any(r["status"] == UNEXPLAINED for r in result) else 0)
