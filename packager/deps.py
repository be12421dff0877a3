"""Optional dependencies: importing them with an error naming the extra, their versions, Java, runtime base."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Mapping

from packager.errors import MissingDependency


def require(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        interrupted = _interruption(exc)
        if interrupted is not None:  # Ctrl-C or SIGTERM inside a C extension's import surfaces as an ImportError
            raise interrupted from None  # (onnxruntime: "initialization failed"): the run was stopped, nothing is missing
        raise MissingDependency(
            f"{purpose} needs the Python package {module.split('.')[0]!r}, which is not installed ({exc})",
            f"pip install 'packager[{extra}]'",
        ) from None


def _interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or SIGTERM's subclass of it) an import error wraps, if any: a signal arriving while a C
    extension initialises is reported as that extension failing to import (a SIGTERM test saw a search carry on)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


NOT_INSTALLED = "not installed"


def version_of(distribution: str) -> str:
    """The installed version of ``distribution``, or of the distribution that provides the module of that name."""
    name = distribution_of(distribution)
    if name is None:
        return NOT_INSTALLED
    return metadata.version(name)


def distribution_of(name: str) -> str | None:
    """The installed distribution that answers to ``name``: itself, or the one providing the import package ``name``.

    The module ``tensorflow`` comes from ``tensorflow-cpu`` on CPU images (the pinned stack here), ``sklearn`` from
    ``scikit-learn``: pinning the module's name would write ``tensorflow==not installed``, which pip rejects."""
    for candidate in (name, *module_providers().get(name.replace("-", "_"), [])):
        try:
            return _canonical(metadata.distribution(candidate).metadata["Name"])
        except metadata.PackageNotFoundError:
            continue
    return None


def _canonical(name: str) -> str:
    """PEP 503 form: the tensorflow-cpu wheel calls itself "tensorflow_cpu" in its METADATA."""
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def module_providers() -> Mapping[str, list[str]]:
    """import package -> distributions (reads every installed RECORD once: ~0.1-0.5 s, hence cached)."""
    return metadata.packages_distributions()


def requirement(distribution: str) -> str:
    """A requirements.txt line pip accepts: ``name==version`` of what is installed, the bare name when nothing is."""
    installed = distribution_of(distribution)
    return f"{installed}=={metadata.version(installed)}" if installed else distribution


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
