"""packager: convert, quantize, validate and package trained ML models.

The public API is imported lazily so that ``import packager`` (and the CLI's ``--help``) stays fast.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "convert": "packager.conversion",
    "load_source": "packager.conversion",
    "Package": "packager.conversion",
    "validate": "packager.inspection",
    "inspect": "packager.inspection",
    "support_matrix": "packager.matrix",
    "Signature": "packager.signature",
    "TensorSpec": "packager.signature",
    "Manifest": "packager.package",
    "read_manifest": "packager.package",
    "ValidationReport": "packager.validation",
    "PackagerError": "packager.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'packager' has no attribute {name!r}")
    return getattr(import_module(module), name)
