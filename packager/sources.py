"""Where a source given by URI lives on this machine: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and
``runs:/RUN_ID/PATH`` are downloaded by MLflow's client (the mlflow plugin) before any sandbox starts, because the
sandbox sees neither the tracking store nor the network; what runs in the sandbox is the downloaded folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

URI_SCHEMES = ("models:/", "runs:/")


def local_source(source: Any) -> Any:
    """``source`` itself, or for an MLflow URI the local folder it was downloaded to (kept until the process exits)."""
    if isinstance(source, (str, Path)) and str(source).startswith(URI_SCHEMES):
        from importlib import import_module

        return import_module("packager.converters.mlflow").resolve_uri(str(source))  # the mlflow plugin
    return source
