"""JSON as packager writes it (manifests, ``--json`` output, server responses): numpy scalars and arrays as plain
numbers and lists, paths as strings. A neutral module, so the core, the CLI and the server share one encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for the values models produce."""
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(data: Any, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, sort_keys=False, default=json_default)


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(dumps(data) + "\n")
