"""Runtimes for Python-object formats (pickle, joblib, skops): load through the safety layer, predict
with whichever framework plugin loads that format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.contract import Format, Runtime
from packager.deps import version_of
from packager.plugins import runs
from packager.safety import check_pickle_file, check_zip_file
from packager.validation import SAME_KERNELS, criteria_table

from ._sklearn_api import Loaded, single_pass_predict


class _PythonObjectRuntime(Runtime):
    format = ""
    takes_source_input = True  # the model itself runs: predict feeds floats as read, not cast to float32 (issue 26)

    def requirements(self) -> list[str]:
        return [*super().requirements(), f"scikit-learn=={version_of('scikit-learn')}", f"numpy=={version_of('numpy')}"]

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from packager.plugins import default_registry

        registry = default_registry()
        plugin = registry.framework(registry.framework_for_format(self.format))
        return Loaded((plugin, plugin.load(path, self.format, trust=trust)))

    def predict(self, handle: Any, signature, feeds) -> dict[str, Any]:
        return single_pass_predict(handle, signature, feeds)


SAME_OBJECT_CRITERIA = criteria_table({None: SAME_KERNELS})  # the very estimator, re-serialized


PICKLE = Format("pickle", title="Python pickle", suffix=".pkl", suffixes=(".pickle",), check=check_pickle_file)
JOBLIB = Format(
    "joblib",
    title="joblib pickle",
    suffix=".joblib",
    check=None,
    safe_because="its arrays are raw bytes between pickle opcodes, so it is checked while loading: the only loader, "
    "packager.safety.load_joblib, applies the pickle allow-list to every import as it reads",
)


def is_skops(path: Path, head: bytes) -> bool:
    """A skops archive: a zip with schema.json at its root."""
    from packager.formats import zip_names

    return "schema.json" in zip_names(path)


SKOPS = Format("skops", title="skops (safe, no code on load)", suffix=".skops", check=check_zip_file, detect=is_skops, containers=("zip",))


@runs(PICKLE, criteria=SAME_OBJECT_CRITERIA)
class PickleRuntime(_PythonObjectRuntime):
    name, format, distribution = "pickle (scikit-learn)", "pickle", "scikit-learn"

    def requirements(self) -> list[str]:
        return [f"scikit-learn=={version_of('scikit-learn')}", f"numpy=={version_of('numpy')}"]


@runs(JOBLIB, criteria=SAME_OBJECT_CRITERIA)
class JoblibRuntime(_PythonObjectRuntime):
    name, format, distribution = "joblib", "joblib", "joblib"


@runs(SKOPS, criteria=SAME_OBJECT_CRITERIA)
class SkopsRuntime(_PythonObjectRuntime):
    name, format, distribution = "skops", "skops", "skops"
