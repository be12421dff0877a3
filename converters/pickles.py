"""Runtimes for Python-object formats (pickle, joblib, skops): load through the safety layer, predict
with whichever framework plugin claims the object."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from converters._deps import version_of
from packager.plugins import runs


class _PythonObjectRuntime:
    executes = True
    format = ""

    def version(self) -> str:
        import platform

        return platform.python_version()

    def versions(self) -> dict[str, str]:
        return {}

    def requirements(self) -> list[str]:
        return [f"scikit-learn=={version_of('scikit-learn')}", f"numpy=={version_of('numpy')}"]

    def load(self, path: Path, *, trust: bool = False) -> Any:
        from packager.plugins import default_registry

        registry = default_registry()
        plugin = registry.framework(registry.framework_for_format(self.format))
        model = plugin.load(path, self.format, trust=trust)
        return plugin, model

    def predict(self, handle: Any, signature, feeds) -> dict[str, Any]:
        plugin, model = handle
        return plugin.predict(model, signature, feeds)


@runs("pickle")
class PickleRuntime(_PythonObjectRuntime):
    name = "python pickle"
    format = "pickle"


@runs("joblib")
class JoblibRuntime(_PythonObjectRuntime):
    name = "joblib"
    format = "joblib"

    def version(self) -> str:
        return version_of("joblib")

    def requirements(self) -> list[str]:
        return [*super().requirements(), f"joblib=={version_of('joblib')}"]


@runs("skops")
class SkopsRuntime(_PythonObjectRuntime):
    name = "skops"
    format = "skops"

    def version(self) -> str:
        return version_of("skops")

    def requirements(self) -> list[str]:
        return [*super().requirements(), f"skops=={version_of('skops')}"]
