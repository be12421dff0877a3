"""What the gradient-boosting plugins (xgboost, lightgbm, catboost) share: their native files are loaded into the library's
scikit-learn-API estimator (``XGBClassifier``, ``LGBMRegressor``...), so signature, sample rows, native prediction, ONNX and
PMML go through the scikit-learn plugin exactly as for a pickled estimator; and a native-format runtime that loads the file
the same way, so validation and ``packager predict`` run it.

Nothing here is registered itself: each library's module subclasses these and marks the subclass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
        from packager.converters.sklearn import Sklearn

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

    def predict(self, model: Any, signature: Any, feeds: dict[str, Any]) -> dict[str, Any]:
        return self._sklearn().predict(model, signature, feeds)

    def serve(self, model: Any, signature: Any, feeds: dict[str, Any]) -> dict[str, Any]:
        return self._sklearn().serve(model, signature, feeds)


class NativeRuntime(Runtime):
    """Runs a native model file (load + predict) through its framework plugin."""

    framework = ""
    native_format = ""

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from packager.plugins import default_registry

        plugin = default_registry().framework(self.framework)
        return plugin, plugin.load(Path(path), self.native_format, trust=trust)

    def predict(self, handle: Any, signature: Any, feeds: Any) -> dict[str, Any]:
        plugin, model = handle
        return plugin.predict(model, signature, feeds)


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
    raise UnsupportedConversion(f"{target} holds {', '.join(packages)} models only, not {type(model).__name__}",
                                "use --to onnx, pmml or skops")


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
