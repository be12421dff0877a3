"""The package: a directory holding the model file, manifest.json, requirements.txt, an input example.

Written into a staging folder next to the destination and renamed into place, so a failed or
interrupted conversion never leaves a half-written package behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from packager import errors
from packager.errors import InputFileError, OutputExists
from packager.jsonio import write_json  # noqa: F401  (re-exported: the pipeline writes manifests through it)
from packager.signature import Signature

MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"
INPUT_EXAMPLE = "input_example.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Quantization:
    mode: str | None
    applied: bool
    reason: str = ""
    size_before: int | None = None
    size_after: int | None = None
    attempts: tuple = ()  # --quantize auto: each mode tried, whether it was kept, and why


@dataclass(frozen=True)
class SourceInfo:
    framework: str
    model_class: str
    file: str | None
    format: str | None
    sha256: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """What the package is and how it was made (the MLmodel of packager)."""

    format: str
    model_file: str
    created: str
    source: SourceInfo
    signature: Signature
    quantization: Quantization
    conversion: Mapping[str, Any]
    validation: Mapping[str, Any]
    versions: Mapping[str, str]
    files: Mapping[str, str] = field(default_factory=dict)
    trusted_source: bool = False
    accepted_mismatch: bool = False
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["signature"] = self.signature.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Manifest":
        data = dict(data)
        check_model_file(data.get("model_file"))
        data["source"] = SourceInfo(**data["source"])
        data["signature"] = Signature.from_dict(data["signature"])
        data["quantization"] = Quantization(**{**data["quantization"], "attempts": tuple(data["quantization"].get("attempts", ()))})
        return cls(**data)


def check_model_file(name: Any) -> str:
    """A manifest names its model file or folder inside the package: a plain name, never a path
    (a crafted manifest would otherwise point a runtime at any file on the machine)."""
    from packager.errors import InputFileError

    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise InputFileError(
            f"the manifest names its model file as {name!r}, which is not a plain name inside the package",
            "the package was tampered with; re-create it with `packager convert`",
        )
    return name


def read_manifest(package_dir: str | Path) -> Manifest:
    """The package's manifest, or one InputFileError: a hand-edited or truncated manifest was an internal error (exit
    70, ``KeyError: 'source'``) rather than a message about the package."""
    path = Path(package_dir) / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"lacks {exc}" if isinstance(exc, KeyError) else f"is not a valid manifest ({errors.first_line(exc)[:200]})"
        raise InputFileError(f"{Path(package_dir).name}/{MANIFEST} {why}", "re-create the package with `packager convert`") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def digest_files(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative posix path -> digest)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def check_destination(destination: Path, overwrite: bool) -> None:
    """OutputExists when ``destination`` holds something and may not be replaced (callers check before slow work).
    The message names the path as the caller gave it."""
    if destination.exists() and not overwrite and (destination.is_file() or any(destination.iterdir())):
        raise OutputExists(
            f"{destination} already exists and is not empty", "choose another -o, or pass --force (overwrite=True in Python) to replace it"
        )


@contextlib.contextmanager
def staging_dir(destination: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty folder beside ``destination``; on success rename it into place, else delete it."""
    destination = destination.absolute()
    check_destination(destination, overwrite)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent))
    try:
        yield staging
        _replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(staging: Path, destination: Path) -> None:
    if not destination.exists():
        os.replace(staging, destination)
        return
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.replace(destination, old)
    try:
        os.replace(staging, destination)
    except OSError:
        os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def input_example(feeds: Mapping[str, Any], rows: int = 5) -> dict[str, Any]:
    return {name: array[:rows].tolist() for name, array in feeds.items()}


MLMODEL = "MLmodel"


def write_mlmodel(folder: Path, manifest: Manifest) -> None:
    """MLflow's ``MLmodel`` and ``python_env.yaml`` beside the manifest, so ``mlflow.pyfunc.load_model(PACKAGE)`` runs
    the package with its own runtime (issue 25; the contents are ``packager.mlflow_package``'s). Written after the manifest and
    outside its digests: like the manifest, it describes the package."""
    from packager.mlflow_package import PYTHON_ENV, mlmodel, python_env

    listed = folder / REQUIREMENTS
    requirements = [line for line in listed.read_text().splitlines() if line.strip()] if listed.is_file() else []
    write_json(folder / MLMODEL, mlmodel(manifest, requirements))
    (folder / PYTHON_ENV).write_text(python_env(requirements))
