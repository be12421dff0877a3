"""The model registry: content-addressed blobs + a SQL catalog of versions, aliases, params,
metrics, tags and lineage. ``Registry(url)`` is the whole API; the CLI is a thin layer over it."""
from __future__ import annotations

from packager.registry.refs import ModelRef

__all__ = ["ModelRef", "Registry"]


def __getattr__(name: str):
    if name == "Registry":
        from packager.registry.api import Registry

        return Registry
    raise AttributeError(name)
