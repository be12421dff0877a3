"""Loading what a plugin names, with one error handling: converter modules (``packager.converters``), registry backends
(``packager.registries``) and blob stores (``packager.blobstores``).

Why one module: the three groups had three loaders (plugins.py, registry/backends.py, registry/blobs.py) with three
spellings of the same two failures, and the registry's ``module:attribute`` table entries a fourth. Whatever breaks in a
third party's code on import (any exception: a missing dependency, a syntax error, a ``raise`` at module level), or
names the wrong kind of object, is a ``PluginError`` naming the entry point, never a traceback from deep inside
``importlib`` and never a silently missing plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from packager.errors import PluginError

HINT = "fix or uninstall the package that provides it"


def group(name: str) -> list[metadata.EntryPoint]:
    """The installed entry points of group ``name``, in the order ``importlib.metadata`` gives them."""
    return list(metadata.entry_points(group=name))


def find(group_name: str, name: str) -> metadata.EntryPoint | None:
    """The entry point called ``name`` in ``group_name`` (a URL scheme), if one is installed."""
    return next((ep for ep in group(group_name) if ep.name == name), None)


def reference(group_name: str, name: str, value: str) -> metadata.EntryPoint:
    """A ``module:attribute`` written in a table (a built-in backend or store), loaded as if it were an entry point."""
    return metadata.EntryPoint(name=name, value=value, group=group_name)


def load(
    ep: metadata.EntryPoint,
    what: str,
    *,
    accept: Callable[[Any], bool] = lambda obj: True,
    must_name: str = "",
    hint: str = HINT,
) -> Any:
    """The object ``ep`` names; ``what`` says which kind of plugin it is in the error (``"registry backend"``). An
    object ``accept`` refuses is a PluginError saying it ``must_name`` something else."""
    try:
        obj = ep.load()
    except Exception as exc:  # a broken third-party plugin must not take the tool down silently
        raise PluginError(f"{what} entry point {ep.name} = {ep.value} cannot be loaded ({type(exc).__name__}: {exc})", HINT) from exc
    if not accept(obj):
        raise PluginError(f"{what} entry point {ep.name} = {ep.value} must name {must_name}", hint)
    return obj
