"""MLeap Bundle.ML from scikit-learn through the pure-Python ``mleap`` package.

Validation: where mleap can deserialize the estimator node back into scikit-learn, the round trip
is executed and compared; otherwise the bundle's structure is checked and reported as exactly that.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Runtime
from packager.deps import require, version_of
from packager.errors import ConversionError, InputFileError, UnsupportedConversion
from packager.plugins import converts, runs
from packager.safety import check_zip_file
from packager.validation import FLOAT32, criteria_table

_MLEAP_MODULES = (
    "mleap.sklearn.pipeline",
    "mleap.sklearn.base",
    "mleap.sklearn.logistic",
    "mleap.sklearn.svm",
    "mleap.sklearn.ensemble.forest",
    "mleap.sklearn.tree.tree",
    "mleap.sklearn.preprocessing.data",
    "mleap.sklearn.decomposition.pca",
)
_ROUND_TRIP_OPS = frozenset({"logistic_regression", "linear_regression"})


def _import_mleap() -> None:
    for module in _MLEAP_MODULES:
        require(module, "mleap", "MLeap export")


def _parameters(function: Any) -> set[str]:
    """A callable's parameter names. Not ``__code__.co_varnames``: that lists its local variables too (a local named
    ``feature_names`` passed an argument the function does not take), and a wrapped or builtin callable has no code."""
    import inspect

    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


@converts("sklearn", to="mleap", note="Bundle.ML zip; round-trip validated for linear models, structure-checked otherwise")
def sklearn_to_mleap(model: Any, signature, out: Path, options) -> Any:
    """A FeatureExtractor over the signature's columns, then the (copied) estimator, as an MLeap pipeline."""
    if signature.columnar:
        raise UnsupportedConversion("mleap's scikit-learn support has no ColumnTransformer", "use --to onnx or pmml for column pipelines")
    _import_mleap()
    from mleap.sklearn.preprocessing.data import FeatureExtractor
    from sklearn.pipeline import Pipeline

    estimator = copy.deepcopy(model)  # mleap writes attributes onto the estimator
    if not getattr(estimator, "serializable", False) or isinstance(estimator, Pipeline):
        raise UnsupportedConversion(f"mleap cannot serialise {type(model).__name__}", "use --to onnx, pmml or skops")
    columns = [f"x{i}" for i in range(signature.inputs[0].shape[1])]
    extractor = FeatureExtractor(input_scalars=columns, output_vector="features")
    init_args: dict[str, Any] = {"input_features": "features", "prediction_column": "prediction"}
    if "feature_names" in _parameters(estimator.mlinit):
        init_args["feature_names"] = columns
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            estimator.mlinit(**init_args)
            pipeline = Pipeline([(extractor.name, extractor), (estimator.name, estimator)])
            pipeline.mlinit()
            pipeline.serialize_to_bundle(work, "bundle", init=True)
        except Exception as exc:
            raise ConversionError(
                f"mleap failed to serialise {type(model).__name__}: {type(exc).__name__}: {exc}", "use --to onnx, pmml or skops"
            ) from exc
        path = out / "model.zip"
        _zip_dir(Path(work) / "bundle", path)
    return Artifact(path, {"converter": "mleap", "converter_version": version_of("mleap"), "estimator_node": estimator.name})


def _zip_dir(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                zf.write(item, item.relative_to(folder).as_posix())


MLEAP_CRITERIA = criteria_table({None: FLOAT32})


def is_mleap_bundle(path: Path, head: bytes) -> bool:
    """A zipped Bundle.ML: bundle.json at the root or in the one top folder."""
    from packager.formats import zip_names

    names = zip_names(path)
    return "bundle.json" in names or any(n.endswith("/bundle.json") and n.count("/") == 1 for n in names)


MLEAP = Format("mleap", title="MLeap bundle", suffix=".zip", check=check_zip_file, detect=is_mleap_bundle, containers=("zip",))


@runs(MLEAP, criteria=MLEAP_CRITERIA)
class MleapRuntime(Runtime):
    """Round trip through mleap's deserializers where they exist."""

    name = "mleap (python)"
    distribution = "mleap"

    def can_execute(self, path: Path) -> bool:
        ops = set(_read_bundle(Path(path), deserialize=False)["nodes"].values())
        return bool(ops & _ROUND_TRIP_OPS)

    def check(self, path: Path, signature) -> dict[str, Any]:
        found = self.inspect(path)
        return {
            "reason": "mleap's Python package cannot read this estimator back; bundle.json and every node's model.json were checked",
            **found,
        }

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        return _read_bundle(Path(path))

    def predict(self, bundle: Mapping[str, Any], signature, feeds) -> dict[str, Any]:
        node = bundle["estimator"]
        X = feeds[signature.input_names[0]]
        out = {}
        for name in signature.output_names:
            if name == "label":
                out[name] = node.predict(X)
            elif name == "probabilities" and hasattr(node, "predict_proba"):
                out[name] = node.predict_proba(X)
            elif name == "variable":
                out[name] = node.predict(X)
        return out

    def inspect(self, path: Path) -> dict[str, Any]:
        bundle = _read_bundle(Path(path), deserialize=False)
        return {key: bundle[key] for key in ("bundle", "nodes")}


def _read_bundle(path: Path, deserialize: bool = True) -> dict[str, Any]:
    from packager.safety.zips import check_zip

    check_zip(path)
    with tempfile.TemporaryDirectory() as work:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(work)
        root = Path(work) / "root"
        try:
            bundle = json.loads((Path(work) / "bundle.json").read_text())
            nodes = {d.name: json.loads((d / "model.json").read_text())["op"] for d in root.iterdir() if d.is_dir()}
        except (OSError, KeyError, ValueError) as exc:
            raise InputFileError(f"{path.name} is not an MLeap bundle ({exc})", "re-export it") from exc
        result: dict[str, Any] = {"bundle": {k: bundle.get(k) for k in ("name", "format", "version")}, "nodes": nodes}
        if deserialize:
            result["estimator"] = _deserialize_estimator(root, nodes)
    return result


def _deserialize_estimator(root: Path, nodes: Mapping[str, str]) -> Any:
    _import_mleap()
    from sklearn.linear_model import LinearRegression, LogisticRegression

    by_op = {"logistic_regression": LogisticRegression, "linear_regression": LinearRegression}
    for node, op in nodes.items():
        if op in by_op:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return by_op[op]().deserialize_from_bundle(str(root), node)
    return None
