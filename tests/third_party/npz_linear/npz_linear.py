"""A new target format from outside packager: "npz-linear", a linear model's weights in a numpy ``.npz``.

Everything packager needs to know about the format is declared here (detection, title, suffix, the safety check,
the runtime, how validation judges it, threads) and one converter from scikit-learn's linear models fills it.
It reaches packager through the ``packager.converters`` entry point alone.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Runtime
from packager.errors import InputFileError, UnsafeModelError, UnsupportedConversion
from packager.plugins import converts, runs
from packager.validation import FLOAT32, criteria_table

MEMBERS = {"coef.npy", "intercept.npy", "classes.npy"}  # classes.npy only for classifiers


def is_linear_npz(path: Path, head: bytes) -> bool:
    """A zip whose members are exactly the weight arrays (what ``numpy.savez`` writes for them)."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        return False
    return {"coef.npy", "intercept.npy"} <= names <= MEMBERS


def check_linear_npz(path: Path) -> None:
    """Nothing but numeric arrays: an object array would be a pickle inside the zip."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise UnsafeModelError(f"{path.name} holds a pickled object array ({exc})", "re-export it with numeric arrays only") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(f"{path.name} is not a readable npz file ({type(exc).__name__})", "re-export it") from None
    odd = [n for n, a in arrays.items() if a.dtype.kind not in "fiub"]
    if odd:
        raise UnsafeModelError(f"{path.name} has non-numeric arrays {odd}", "re-export it with numeric arrays only")


NPZ_LINEAR = Format("npz-linear", title="numpy linear weights (npz)", suffix=".npz", detect=is_linear_npz, check=check_linear_npz)


@runs(NPZ_LINEAR, criteria=criteria_table({None: FLOAT32}))
class NpzLinearRuntime(Runtime):
    """X @ coef.T + intercept in numpy; softmax (several classes) or logistic (two) for classifiers."""

    name, distribution = "numpy (npz-linear)", "numpy"
    thread_control = "none"  # numpy's BLAS reads its own environment variables

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> dict[str, Any]:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def predict(self, weights: Mapping[str, Any], signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        X = np.asarray(feeds[signature.input_names[0]], dtype=np.float64)
        scores = X @ weights["coef"].T + weights["intercept"]
        if "classes" not in weights:
            single = scores.ndim == 1 or scores.shape[1] == 1
            return {signature.output_names[0]: scores.reshape(-1) if single else scores}
        if scores.shape[1] == 1:
            p = 1 / (1 + np.exp(-scores[:, 0]))
            probabilities = np.stack([1 - p, p], axis=1)
        else:
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            probabilities = e / e.sum(axis=1, keepdims=True)
        labels = weights["classes"][probabilities.argmax(axis=1)]
        return dict(zip(signature.output_names, (labels, probabilities), strict=False))  # a label-only signature takes the labels


@converts("sklearn", to="npz-linear", note="third-party plugin: linear models as numpy weights")
def sklearn_to_npz_linear(model: Any, signature: Any, out: Path, options: Any) -> Artifact:
    import numpy as np
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if not isinstance(model, (LinearRegression, LogisticRegression)):
        raise UnsupportedConversion(f"npz-linear holds LinearRegression or LogisticRegression, not {type(model).__name__}", "use --to onnx")
    arrays = {"coef": np.atleast_2d(model.coef_), "intercept": np.atleast_1d(model.intercept_)}
    if isinstance(model, LogisticRegression):
        arrays["classes"] = model.classes_
    path = out / "model.npz"
    np.savez(path, **arrays)
    return Artifact(path, {"converter": "npz_linear", "arrays": sorted(arrays)})
