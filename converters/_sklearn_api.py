"""What the gradient-boosting plugins (xgboost, lightgbm, catboost) share: their native files are loaded into the library's
scikit-learn-API estimator (``XGBClassifier``, ``LGBMRegressor``...), so signature, sample rows, native prediction, ONNX and
PMML go through the scikit-learn plugin exactly as for a pickled estimator; and a native-format runtime that loads the file
the same way, so validation and ``packager predict`` run it.

Nothing here is registered itself: each library's module subclasses these and marks the subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from packager.contract import Framework, Runtime
from packager.deps import version_of
from packager.errors import InputFileError, UnsupportedConversion, converting


class SklearnApiFramework(Framework):
    """A source framework whose loaded model is a scikit-learn-API estimator: every question after loading is the
    scikit-learn plugin's."""

    distribution = ""
    file_formats: frozenset[str] = frozenset()

    @staticmethod
    def claims(obj: Any) -> bool:  # in-memory estimators are scikit-learn models (the scikit-learn plugin claims them)
        return False

    def load_native(self, path: Path, fmt: str) -> Any:
        raise NotImplementedError

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        return self.load_native(Path(path), fmt)

    def _sklearn(self) -> Any:
        from .sklearn import Sklearn

        return Sklearn()

    def describe(self, model: Any) -> dict[str, Any]:
        return {"estimator": type(model).__name__, self.distribution: version_of(self.distribution)}

    def versions(self) -> dict[str, str]:
        return {self.distribution: version_of(self.distribution), "scikit-learn": version_of("scikit-learn"), "numpy": version_of("numpy")}

    def label_outputs(self, model: Any) -> set[str]:
        return self._sklearn().label_outputs(model)

    def signature(self, model: Any, sample: Any) -> Any:
        return self._sklearn().signature(model, sample)

    def feeds(self, model: Any, signature: Any, sample: Any) -> dict[str, Any]:
        return self._sklearn().feeds(model, signature, sample)

    def predict(self, model: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return self._sklearn().predict(model, signature, feeds)

    def serve(self, model: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return self._sklearn().serve(model, signature, feeds)


class NativeRuntime(Runtime):
    """Runs a native model file (load + predict) through its framework plugin."""

    framework = ""
    native_format = ""
    takes_source_input = True  # the model itself runs: predict feeds floats as read, not cast to float32 (issue 26)

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from packager.plugins import default_registry

        plugin = default_registry().framework(self.framework)
        return Loaded((plugin, plugin.load(Path(path), self.native_format, trust=trust)))

    def predict(self, handle: Any, signature: Any, feeds: Any) -> dict[str, Any]:
        return single_pass_predict(handle, signature, feeds)


def single_pass_predict(handle: Any, signature: Any, feeds: Any) -> dict[str, Any]:
    """The framework's single-pass ``serve`` (every output from one call) for a classifier whose label is the argmax
    of its probabilities by construction (``ARGMAX_CLASSIFIERS``), once it gave ``predict``'s outputs on the first
    batch, as bench's native baseline does: predict then predict_proba walk the trees twice, and XGBoost's package ran
    at 0.35x, a pickled forest's at 0.63x the native baseline at 16,384 rows (benchmarks/results/optimize.md)."""
    plugin, model = handle
    if getattr(handle, "single_pass", None) is None:
        exact = plugin.predict(model, signature, feeds)
        if isinstance(handle, Loaded):
            handle.single_pass = label_is_argmax(model) and _same(plugin.serve(model, signature, feeds), exact)
        return exact
    return plugin.serve(model, signature, feeds) if handle.single_pass else plugin.predict(model, signature, feeds)


class Loaded(tuple):
    """(plugin, model), and whether the plugin's ``serve`` gives its ``predict``'s outputs (decided on the first batch)."""

    single_pass: bool | None = None


# classifiers whose predict IS the argmax of their predict_proba (read in their code: scikit-learn's trees, forests and
# HistGradientBoosting, XGBClassifier, LGBMClassifier), so serving labels from the probabilities changes no row. Not
# SVC (Platt-scaled probabilities disagree with its decision function), nor KNN or linear models (ties): a first batch
# that agrees proves nothing about the next one, so those keep two passes.
ARGMAX_CLASSIFIERS = frozenset(
    {
        ("sklearn", "RandomForestClassifier"),
        ("sklearn", "ExtraTreesClassifier"),
        ("sklearn", "DecisionTreeClassifier"),
        ("sklearn", "ExtraTreeClassifier"),
        ("sklearn", "HistGradientBoostingClassifier"),
        ("xgboost", "XGBClassifier"),
        ("lightgbm", "LGBMClassifier"),
    }
)


def label_is_argmax(model: Any) -> bool:
    last = model.steps[-1][1] if getattr(model, "steps", None) else model
    return (type(last).__module__.split(".")[0], type(last).__name__) in ARGMAX_CLASSIFIERS


def _same(fast: Mapping[str, Any], exact: Mapping[str, Any]) -> bool:
    import numpy as np

    return fast.keys() == exact.keys() and all(np.array_equal(np.asarray(fast[k]), np.asarray(exact[k])) for k in exact)


def boosted_estimator(model: Any, packages: tuple[str, ...], target: str) -> Any:
    """The model itself when it is an estimator of one of ``packages``; a pipeline (its preprocessing would be lost in a
    native file) or another estimator is refused with the reason."""
    top = type(model).__module__.split(".")[0]
    if top in packages:
        return model
    last = model.steps[-1][1] if getattr(model, "steps", None) else None
    if last is not None and type(last).__module__.split(".")[0] in packages:
        raise UnsupportedConversion(
            f"a {target} file holds only the {type(last).__name__} booster, not the {type(model).__name__} steps before it",
            "use --to onnx, pmml or skops to keep the whole pipeline, or convert the fitted booster step alone",
        )
    raise UnsupportedConversion(
        f"{target} holds {', '.join(packages)} models only, not {type(model).__name__}", "use --to onnx, pmml or skops"
    )


def holds(*packages: str) -> Callable[[Any], bool]:
    """``@converts(applies=...)`` for a converter that takes estimators of ``packages`` only: the model is one, or a
    pipeline ending in one (which the converter still refuses with its reason: that refusal is worth reading)."""

    def applies(model: Any) -> bool:
        last = model.steps[-1][1] if getattr(model, "steps", None) else model
        return any(type(m).__module__.split(".")[0] in packages for m in (model, last))

    return applies


def save_native(library: str, save: Any, path: Path) -> Any:
    """The library's own ``save_model`` into ``path``, its failures ours (ConversionError naming the library)."""
    from packager.contract import Artifact

    with converting(f"{library} save_model failed on {path.name}", "re-fit the model or report it to the library's project"):
        save(str(path))
    return Artifact(path, {"converter": f"{library} save_model", library: version_of(library)})


def read_text_head(path: Path, size: int = 1 << 16) -> str:
    try:
        with Path(path).open("rb") as fh:
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputFileError(f"cannot read {Path(path).name}: {exc.strerror}", "check the file permissions") from exc


def float32_trees(convert: Any) -> Any:
    """Wrap an skl2onnx converter of a library that casts its input to float32 before walking its trees (XGBoost, CatBoost)
    so that, given a double input, the graph does the same: ``Cast`` to float32, the trees, then ``Cast`` of the float
    scores to the double outputs skl2onnx declared.

    Why: in a pipeline, the steps before the booster (a StandardScaler) compute in float64 in scikit-learn and the library
    rounds their result to float32 once. A float32 ONNX graph computes the scaler in float32 instead, a few ulps away, and
    a row equal to a split value (wine's features repeat, so held-out rows equal training cut points) crosses it (measured,
    XGBoost 3.2, wine, 20 trees: probabilities off by 0.030 on 6 of 45 rows). Double upstream + one cast reproduces the
    library's rounding exactly."""

    def convert_cast(scope, operator, container):
        from onnx import TensorProto
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            return convert(scope, operator, container)
        source = operator.inputs[0]
        narrowed = scope.declare_local_variable("trees_input32", FloatTensorType(source.type.shape))
        container.add_node(
            "Cast", source.full_name, narrowed.full_name, to=TensorProto.FLOAT, name=scope.get_unique_operator_name("CastTreesInput")
        )
        outputs = [
            scope.declare_local_variable(f"{o.raw_name}32", FloatTensorType(o.type.shape)) if isinstance(o.type, DoubleTensorType) else o
            for o in operator.outputs
        ]
        convert(scope, _Retyped(operator, [narrowed, *operator.inputs[1:]], outputs), container)
        for declared, computed in zip(operator.outputs, outputs, strict=True):  # outputs is built from operator.outputs
            if declared is not computed:
                container.add_node(
                    "Cast",
                    computed.full_name,
                    declared.full_name,
                    to=TensorProto.DOUBLE,
                    name=scope.get_unique_operator_name("CastTreesOutput"),
                )

    return convert_cast


class _Retyped:
    """The operator as the wrapped converter sees it: float32 variables in place of the declared double ones; everything
    else (raw_operator, target_opset...) is the real operator's."""

    def __init__(self, operator: Any, inputs: list, outputs: list):
        self._operator, self.inputs, self.outputs = operator, inputs, outputs

    @property
    def input_full_names(self) -> list[str]:
        return [v.full_name for v in self.inputs]

    @property
    def output_full_names(self) -> list[str]:
        return [v.full_name for v in self.outputs]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)
