"""Optional dependencies: importing them with an error naming the extra, their versions, Java, runtime base."""
from __future__ import annotations

import importlib
import shutil
import subprocess
from functools import lru_cache
from importlib import metadata
from types import ModuleType

from packager.errors import MissingDependency


def require(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs the Python package {module.split('.')[0]!r}, which is not installed ({exc})",
            f"pip install 'packager[{extra}]'",
        ) from None


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def java_version() -> str:
    """The JVM version, or MissingDependency when there is no usable java >= 11."""
    java = shutil.which("java")
    hint = "install a Java runtime 11+: apt-get install default-jre-headless (or set PATH to one)"
    if java is None:
        raise MissingDependency("PMML needs Java 11+ and no `java` is on PATH", hint)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependency(f"`java -version` failed ({exc})", hint) from None
    version = out.split('"')[1] if '"' in out else out.strip()
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major == 1:  # "1.8.0_292"
        major = int(version.split(".")[1])
    if major < 11:
        raise MissingDependency(f"PMML needs Java 11+, found Java {version}", hint)
    return version


def quiet_output():
    """Converters print progress bars, notices and warnings (coremltools, tf2onnx, the dynamo
    exporter): keep them off the user's terminal. Their failures still surface as exceptions."""
    import contextlib
    import io
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


class Runtime:
    """Base of format runtimes: one distribution gives the version, the manifest entry and the requirement."""

    name = ""
    distribution = ""
    executes = True

    def version(self) -> str:
        return version_of(self.distribution)

    def versions(self) -> dict[str, str]:
        return {self.distribution: self.version()}

    def requirements(self) -> list[str]:
        return [f"{self.distribution}=={self.version()}"]
