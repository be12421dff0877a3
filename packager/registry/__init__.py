"""The model registry: content-addressed blobs + a SQL catalog of versions, aliases, params,
metrics, tags and lineage. ``open_registry(url)`` (also named ``Registry``) is the whole API; the CLI
is a thin layer over it. Backends: ``LocalRegistry`` (``api.py``), ``RemoteRegistry`` (``remote.py``),
both ``RegistryBackend``s (``backend.py``), chosen by URL scheme (``backends.py``)."""

from __future__ import annotations

from packager.registry.refs import ModelRef

__all__ = ["ModelRef", "Registry", "RegistryBackend", "open_registry"]


def __getattr__(name: str):
    if name in ("Registry", "open_registry"):
        from packager.registry.backends import open_registry

        return open_registry
    if name == "RegistryBackend":
        from packager.registry.backend import RegistryBackend

        return RegistryBackend
    raise AttributeError(name)
