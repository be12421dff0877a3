"""Where a source given by URI lives on this machine. A plugin declares the URI prefixes it fetches
(``packager.contract.SourceScheme``: the mlflow plugin's ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and
``runs:/RUN_ID/PATH``, downloaded by MLflow's client); this module asks the registry, naming no plugin. The fetch
runs before any sandbox starts, because the sandbox sees neither the tracking store nor the network; what runs in the
sandbox is the downloaded folder, and the lineage the fetch learned crosses as part of the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class Resolved:
    """A source on this machine: ``path`` (the source itself when it was not a URI) and the ``lineage`` its fetch
    recorded for the manifest's source details (empty for a local path: nothing a file says is lineage)."""

    path: Any
    lineage: Mapping[str, Any] = field(default_factory=dict)


def resolve_source(source: Any, registry: Any = None) -> Resolved:
    """``source`` itself, or for a URI a declared scheme fetches, the local copy (kept until the process exits).
    ``registry``: the plugins to ask (default: the installed ones)."""
    if not isinstance(source, (str, Path)) or ":" not in str(source):  # a plain path: no registry look-up
        return Resolved(source)
    from packager.contract import SOURCE_SCHEMES
    from packager.plugins import default_registry

    text = str(source)
    for scheme in (registry or default_registry()).extensions_of(SOURCE_SCHEMES):
        if text.startswith(scheme.prefix):
            path, lineage = scheme.resolve(text)
            return Resolved(path, dict(lineage))
    return Resolved(source)


def local_source(source: Any) -> Any:
    """``source`` itself, or for a URI a declared scheme fetches, the local copy (predict and bench: no lineage)."""
    return resolve_source(source).path
