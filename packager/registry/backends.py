"""``open_registry(url)``: the backend is chosen by the URL's scheme from one table.

    sqlite:///path/catalog.db, postgresql://…   -> LocalRegistry  (a SQL catalog + a blob store)
    http://host:port, https://…                 -> RemoteRegistry (a `packager serve` server)
    mlflow:sqlite:///m.db, mlflow:http://…      -> MlflowRegistry (MLflow's model registry)

A third party adds a backend with ``register_backend(scheme, factory)`` or, without touching this
code, an entry point in the ``packager.registries`` group (name = scheme, value = ``module:factory``).
A factory takes ``(url, blobs=None, **options)`` and returns a ``RegistryBackend``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable

from packager import entry_points
from packager.errors import PluginError, UsageError
from packager.registry.backend import RegistryBackend, default_home

ENTRY_POINT_GROUP = "packager.registries"
Factory = Callable[..., RegistryBackend]

# Named by "module:attribute" so that opening one backend imports nothing of the others.
_BACKENDS: dict[str, str | Factory] = {
    "sqlite": "packager.registry.api:LocalRegistry",
    "postgresql": "packager.registry.api:LocalRegistry",
    "postgresql+psycopg": "packager.registry.api:LocalRegistry",
    "http": "packager.registry.remote:RemoteRegistry",
    "https": "packager.registry.remote:RemoteRegistry",
    "mlflow": "packager.registry.mlflow_store:MlflowRegistry",  # mlflow:<tracking URI> (issue 25)
}


def register_backend(scheme: str, factory: str | Factory, *, replace: bool = False) -> None:
    """Make ``scheme://…`` URLs open with ``factory``. Taking a scheme that exists is refused unless ``replace``."""
    if scheme in _BACKENDS and not replace and _BACKENDS[scheme] != factory:
        raise PluginError(f"registry scheme {scheme!r} is already served by {_BACKENDS[scheme]}", "pass replace=True to take it over")
    _BACKENDS[scheme] = factory


def open_registry(url: str | None = None, blobs: str | None = None, **options: Any) -> RegistryBackend:
    """The registry at ``url`` (default: $PACKAGER_REGISTRY, else SQLite under $PACKAGER_HOME).

    ``blobs`` is the blob store of a local catalog (a folder or ``s3://bucket/prefix``; default
    $PACKAGER_BLOBS, else $PACKAGER_HOME/objects); a server keeps its own, so remote backends ignore it.
    ``options`` go to the backend (``token=``, ``timeout=`` for a server)."""
    from packager import settings

    url = url or settings.registry_url() or f"sqlite:///{default_home() / 'catalog.db'}"
    scheme = url.partition(":")[0].lower() if "://" in url else ""
    factory = _BACKENDS.get(scheme) or _entry_point(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_BACKENDS))
        raise UsageError(f"no registry backend for the URL {url.split('@')[-1]!r}", f"use one of {known}")
    return _load(factory, scheme)(url, blobs, **options)


def _entry_point(scheme: str) -> str | None:
    ep = entry_points.find(ENTRY_POINT_GROUP, scheme)
    if ep is None:
        return None
    _BACKENDS[scheme] = ep.value  # loaded when opened, by the same loader as the table's own entries
    return ep.value


def _load(factory: str | Factory, scheme: str = "") -> Factory:
    if not isinstance(factory, str):
        return factory
    return _backend(entry_points.reference(ENTRY_POINT_GROUP, scheme or factory, factory))


def _backend(ep: metadata.EntryPoint) -> Factory:
    loaded: Factory = entry_points.load(
        ep, "registry backend", accept=callable, must_name="a callable that opens a registry (url, blobs, **options)"
    )
    return loaded
