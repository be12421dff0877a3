"""The ``MLmodel`` every package carries (issue 25), so ``mlflow.pyfunc.load_model(PACKAGE)`` predicts with the
package's own runtime: written by ``packager.package.write_mlmodel``, loaded by MLflow through ``packager.mlflow_pyfunc`` (the
``loader_module``). It is the core's, not the mlflow plugin's: the loader runs the pipeline (``packager.inference``),
which a plugin may not import, and writing it needs no mlflow."""

from __future__ import annotations

import json
from typing import Any

# formats MLflow has a native flavor for, and that flavor's configuration (the pyfunc flavor is always packager's)
NATIVE_FLAVORS: dict[str, str] = {"onnx": "onnx"}


def mlmodel(manifest: Any, requirements: list[str]) -> dict[str, Any]:
    """The ``MLmodel`` of a package: ``python_function`` loads it with packager (``packager.mlflow_pyfunc``: the package's
    own runtime, after the same static checks as ``packager predict``), plus the native flavor where MLflow has one.
    Written as JSON, which is YAML (MLflow reads it with ``yaml.safe_load``); no mlflow import is needed to write it."""
    import platform
    import uuid

    flavors: dict[str, Any] = {
        "python_function": {
            "loader_module": "packager.mlflow_pyfunc",
            "python_version": platform.python_version(),
            "env": {"virtualenv": PYTHON_ENV},
        }
    }
    native = NATIVE_FLAVORS.get(manifest.format)
    if native == "onnx":
        flavors["onnx"] = {
            "data": manifest.model_file,
            "onnx_version": manifest.versions.get("onnx", ""),
            "providers": ["CPUExecutionProvider"],
            "code": None,
        }
    return {
        "flavors": flavors,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": manifest.created,
        "metadata": {"packager_format": manifest.format, "packager_validation": manifest.validation.get("status", "")},
    }


PYTHON_ENV = "python_env.yaml"


def python_env(requirements: list[str]) -> str:
    """MLflow's ``python_env.yaml``: what ``mlflow models serve`` installs into a fresh virtualenv (packager to load
    the package, and the runtime's own requirements)."""
    import platform

    from packager import __version__

    deps = [f"packager=={__version__}", *requirements]
    lines = [f"python: {platform.python_version()}", "build_dependencies:", "- pip", "dependencies:"]
    return "\n".join(lines + [f"- {json.dumps(d)}" for d in deps]) + "\n"
