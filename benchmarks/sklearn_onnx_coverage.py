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
                        model = cls()
                        model.fit(X[:160], y[:160])
                except Exception as exc:
                    row.update(status=NOT_FITTED, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:140] if str(exc) else ''}")
                    rows.append(row)
                    continue
                try:
                    package = convert(model, to="onnx", sample=X[160:], out=Path(work) / f"{kind}-{name}")
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
    (out_dir / "sklearn_onnx_coverage.json").write_text(json.dumps({"sklearn": sklearn.__version__, "counts": counts, "rows": rows}, indent=2))
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
