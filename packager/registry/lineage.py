"""What it takes to rebuild a model, captured at push: code (git), environment (Python, platform,
package versions, pip freeze), container/conda files, and data references."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from packager.errors import InputFileError

CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def strip_credentials(url: str) -> str:
    """``https://user:token@host/repo`` -> ``https://host/repo``."""
    return CREDENTIALS.sub("", url)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: Path) -> dict[str, Any] | None:
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    remote = _git(["remote", "get-url", "origin"], cwd) or _git(["config", "--get", "remote.origin.url"], cwd)
    return {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
        "dirty": bool(_git(["status", "--porcelain", "--untracked-files=no"], cwd)),
        "remote": strip_credentials(remote) if remote else None,
    }


@functools.lru_cache(maxsize=1)
def pip_freeze() -> str:
    """The environment does not change within one process: freeze it once."""
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, timeout=120)
        return done.stdout if done.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def environment(package_versions: Mapping[str, str]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(package_versions),
    }


def data_reference(uri: str) -> dict[str, Any]:
    """URI; for a local file also sha256, size and (for tables, when cheap) the row count."""
    from packager.registry.blobs import hash_file

    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if "://" in uri and not uri.startswith("file://"):
        return {"uri": uri, "sha256": None, "size": None, "rows": None}
    if not path.is_file():
        raise InputFileError(f"--data {uri}: no such file", "give an existing local file or a URI such as s3://bucket/key")
    blob = hash_file(path)
    return {"uri": str(path.resolve()), "sha256": blob.digest, "size": blob.size, "rows": _rows(path)}


def _rows(path: Path) -> int | None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if suffix == ".npy":
            import numpy as np

            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        if suffix in (".csv", ".jsonl") and path.stat().st_size < 512 << 20:
            with path.open("rb") as fh:
                lines = sum(1 for _ in fh)
            return lines - 1 if suffix == ".csv" else lines
    except Exception:
        return None
    return None
