"""Runtimes for Python-object formats (pickle, joblib, skops): load through the safety layer, predict
with whichever framework plugin loads that format."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.deps import Runtime, version_of
from packager.plugins import runs
from packager.validation import SAME_KERNELS, criteria_table


class _PythonObjectRuntime(Runtime):
    format = ""

    def requirements(self) -> list[str]:
        return [*super().requirements(), f"scikit-learn=={version_of('scikit-learn')}", f"numpy=={version_of('numpy')}"]

    def load(self, path: Path, *, trust: bool = False) -> Any:
        from packager.plugins import default_registry

        registry = default_registry()
        plugin = registry.framework(registry.framework_for_format(self.format))
        return plugin, plugin.load(path, self.format, trust=trust)

    def predict(self, handle: Any, signature, feeds) -> dict[str, Any]:
        plugin, model = handle
        return plugin.predict(model, signature, feeds)


SAME_OBJECT_CRITERIA = criteria_table({None: SAME_KERNELS})  # the very estimator, re-serialized


@runs("pickle", criteria=SAME_OBJECT_CRITERIA)
class PickleRuntime(_PythonObjectRuntime):
    name, format, distribution = "pickle (scikit-learn)", "pickle", "scikit-learn"

    def requirements(self) -> list[str]:
        return [f"scikit-learn=={version_of('scikit-learn')}", f"numpy=={version_of('numpy')}"]


@runs("joblib", criteria=SAME_OBJECT_CRITERIA)
class JoblibRuntime(_PythonObjectRuntime):
    name, format, distribution = "joblib", "joblib", "joblib"


@runs("skops", criteria=SAME_OBJECT_CRITERIA)
class SkopsRuntime(_PythonObjectRuntime):
    name, format, distribution = "skops", "skops", "skops"
