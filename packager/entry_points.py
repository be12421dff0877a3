"""Loading what a plugin names, with one error handling: converter modules (``packager.converters``), registry backends
(``packager.registries``) and blob stores (``packager.blobstores``).

Why one module: the three groups had three loaders (plugins.py, registry/backends.py, registry/blobs.py) with three
spellings of the same two failures, and the registry's ``module:attribute`` table entries a fourth. Whatever breaks in a
third party's code on import (any exception: a missing dependency, a syntax error, a ``raise`` at module level), or
names the wrong kind of object, is a ``PluginError`` naming the entry point, never a traceback from deep inside
``importlib`` and never a silently missing plugin.

Where every entry point of a group is loaded at start (converter plugins, blob stores), ``load_or_skip`` applies
Optimum's rule (``exporters/onnx/subpackages.py``): a third party's plugin that fails to load is skipped with one
warning naming its distribution, its entry point and the error, so one broken package no longer stops every command
(before: ``packager formats`` and ``inspect`` of any file failed with its PluginError); packager's own plugins (the
distribution ``packager``) still fail loudly, since a broken one is our bug and would silently drop formats. What the
skipped plugin would have provided is unknown (its code never ran), so a command that finds something missing asks
``explain`` whether a skipped plugin is the likely cause and says so in its error.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from packager.errors import PackagerError, PluginError, first_line

HINT = "fix or uninstall the package that provides it"
OWN_DISTRIBUTION = "packager"


def group(name: str) -> list[metadata.EntryPoint]:
    """The installed entry points of group ``name``, in the order ``importlib.metadata`` gives them."""
    return list(metadata.entry_points(group=name))


def find(group_name: str, name: str) -> metadata.EntryPoint | None:
    """The entry point called ``name`` in ``group_name`` (a URL scheme), if one is installed."""
    return next((ep for ep in group(group_name) if ep.name == name), None)


def reference(group_name: str, name: str, value: str) -> metadata.EntryPoint:
    """A ``module:attribute`` written in a table (a built-in backend or store), loaded as if it were an entry point."""
    return metadata.EntryPoint(name=name, value=value, group=group_name)


def distribution(ep: metadata.EntryPoint) -> tuple[str, str] | None:
    """(name, version) of the distribution that declares ``ep``; None for one built in code (a table entry)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    return str(dist.name), str(dist.version)


def is_third_party(ep: metadata.EntryPoint) -> bool:
    """Declared by an installed distribution other than packager. An entry point of no distribution (built in code)
    counts as ours: only what we can name as someone else's is skipped.

    The name is read from the dist-info folder's name where importlib.metadata has it (``_normalized_name``), not from
    METADATA: parsing packager's METADATA (its whole README) for each of 18 entry points cost 53 ms per plugin load
    here, against 0.1 ms."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return False
    name = getattr(dist, "_normalized_name", None) or dist.name
    return _normal(str(name)) != OWN_DISTRIBUTION


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
    found = distribution(ep) if is_third_party(ep) else None
    origin = f" (from {found[0]} {found[1]})" if found else ""
    try:
        obj = ep.load()
    except Exception as exc:  # a broken third-party plugin must not take the tool down silently
        raise PluginError(f"{what} entry point {ep.name} = {ep.value}{origin} cannot be loaded ({_cause(exc)})", HINT) from exc
    if not accept(obj):
        raise PluginError(f"{what} entry point {ep.name} = {ep.value}{origin} must name {must_name}", hint)
    return obj


@dataclass(frozen=True)
class Skipped:
    """A third party's entry point that failed to load; the tool goes on without it and says so."""

    what: str  # the kind of plugin: "plugin", "blob store"
    name: str
    value: str
    distribution: str
    version: str
    cause: str  # why it failed: "RuntimeError: ..." or "it must name a module"

    @property
    def reason(self) -> str:
        """One clause: which plugin, from which distribution, and why it did not load."""
        return f"the {self.what} {self.name} = {self.value} from {self.distribution} {self.version} failed to load ({self.cause})"

    def provides(self, wanted: str) -> bool:
        """Whether ``wanted`` (a format, framework or URL scheme) carries this plugin's name: its entry point's or its
        distribution's, with or without a ``packager-`` prefix, spelled with ``-``, ``_`` or ``.`` alike (the
        ``acme_weights`` entry point of ``packager-acme-weights`` provides the ``acme-weights`` format)."""
        names = {_normal(self.name), _normal(self.distribution), _normal(self.distribution).removeprefix("packager-")}
        return _normal(wanted) in names


def load_or_skip(
    ep: metadata.EntryPoint,
    what: str,
    *,
    accept: Callable[[Any], bool] = lambda obj: True,
    must_name: str = "",
) -> Any:
    """``load``, except that a third party's entry point that fails is skipped: a ``Skipped`` is returned and one
    warning logged (once per process, ``packager.logs.warn_once``). Packager's own entry points raise as ``load`` does."""
    found = distribution(ep) if is_third_party(ep) else None
    if found is None:
        return load(ep, what, accept=accept, must_name=must_name)
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - whatever a third party's import raises, the others keep working
        cause = _cause(exc)
    else:
        if accept(obj):
            return obj
        cause = f"it must name {must_name}"
    skipped = Skipped(what, ep.name, ep.value, found[0], found[1], cause)
    from packager.logs import warn_once

    warn_once(__name__, f"skipped {skipped.reason}; fix or uninstall {found[0]} to use it")
    return skipped


def explain(error: PackagerError, skipped: Iterable[Skipped], *wanted: str) -> PackagerError:
    """``error`` (something was not found), with the skipped plugins that may be why. A skipped plugin whose name is
    one of ``wanted`` is the cause: a PluginError saying that it failed to load, and why. Any other skipped plugin is
    named as a possible cause in ``error``'s own class (what it would have provided is unknown: its code never ran).
    Nothing skipped: ``error`` itself."""
    skipped = list(skipped)
    if not skipped:
        return error
    for plugin in skipped:
        if any(plugin.provides(name) for name in wanted if name):
            return PluginError(f"{error.what}: {plugin.reason}", f"fix or uninstall {plugin.distribution}")
    explained = copy.copy(error)
    explained.what = f"{error.what} ({'; '.join(p.reason for p in skipped)}: it may be the plugin that provides it)"
    explained.args = (f"{explained.what}. {error.hint}" if error.hint else explained.what,)
    return explained


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
