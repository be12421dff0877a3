"""packager: convert, quantize, validate and package trained ML models.

The public API is imported lazily so that ``import packager`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "convert": "packager.conversion",
    "load_source": "packager.conversion",
    "Package": "packager.conversion",
    "validate": "packager.inspection",
    "optimize": "packager.optimize",
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
    if module == f"{__name__}.{name}":  # the function shares its submodule's name: the attribute is that module, callable
        return import_module(module)
    return getattr(import_module(module), name)


class _CallableModule(ModuleType):
    """A submodule named like the function it exports (``packager.optimize``). Importing a submodule sets it as the
    package's attribute (the import system does, on first import, wherever it happens: the CLI, a test, the user's
    ``import packager.optimize``), replacing the lazy function: a second ``packager.optimize(...)`` then raised
    "'module' object is not callable". Calling the module calls its function, so the public API works in any import
    order, and ``import packager.optimize as m; m.OptimizeResult`` still gives the module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _EXPORTS.get(name) == value.__name__ == f"{self.__name__}.{name}":
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _checkout_plugins() -> None:
    """In a source checkout (the repository on PYTHONPATH, or an editable install) the plugins are the top-level folder
    ``converters/``; installed, setuptools maps that folder to ``packager/converters`` (pyproject's package-dir). Give the
    checkout the installed name too, so ``packager.converters.x`` always means this tree's plugins (an editable install
    of another tree would otherwise answer for the name). Costs one small ``__init__`` at import."""
    import sys
    from importlib.util import module_from_spec, spec_from_file_location
    from pathlib import Path

    here = Path(__file__).resolve().parent
    folder = here.parent / "converters"
    if (here / "converters").is_dir() or not (folder / "__init__.py").is_file() or "packager.converters" in sys.modules:
        return
    spec = spec_from_file_location("packager.converters", folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None  # a .py path always has a spec with a source loader
    module = module_from_spec(spec)
    sys.modules["packager.converters"] = module
    spec.loader.exec_module(module)


_checkout_plugins()
