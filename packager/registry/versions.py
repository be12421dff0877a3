"""What the catalog knows about one version: its files and metadata as frozen values, and the
package digest (the sha256 over its (path, file digest) list) that identifies identical content."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import BlobCorrupt


@dataclass(frozen=True)
class FileEntry:
    path: str
    digest: str
    size: int
    role: str = "package"


@dataclass(frozen=True)
class VersionInfo:
    """One version as the catalog knows it."""

    id: str
    name: str
    version: int
    created: str
    digest: str
    format: str
    quantization: str | None
    validation: str | None
    size: int
    description: str | None = None
    aliases: tuple[str, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FileEntry, ...] = ()
    parents: tuple[str, ...] = ()
    lineage: Mapping[str, Any] = field(default_factory=dict)
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        data = {
            "ref": self.ref,
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "digest": self.digest,
            "format": self.format,
            "quantization": self.quantization,
            "validation": self.validation,
            "size": self.size,
            "description": self.description,
            "aliases": list(self.aliases),
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
        }
        if full:
            data.update(
                files=[vars(f) for f in self.files], parents=list(self.parents), lineage=dict(self.lineage), manifest=dict(self.manifest)
            )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VersionInfo":
        """The inverse of ``to_dict`` (a summary leaves files, parents, lineage and manifest empty)."""
        files = tuple(FileEntry(f["path"], f["digest"], f["size"], f.get("role", "package")) for f in data.get("files", ()))
        return cls(
            id=data["id"],
            name=data["name"],
            version=data["version"],
            created=data["created"],
            digest=data["digest"],
            format=data["format"],
            quantization=data.get("quantization"),
            validation=data.get("validation"),
            size=data["size"],
            description=data.get("description"),
            aliases=tuple(data.get("aliases", ())),
            params=data.get("params", {}),
            metrics=data.get("metrics", {}),
            tags=data.get("tags", {}),
            files=files,
            parents=tuple(data.get("parents", ())),
            lineage=data.get("lineage", {}),
            manifest=data.get("manifest", {}),
        )


def package_digest(entries: Iterable[FileEntry]) -> str:
    lines = "\n".join(f"{e.path} {e.digest}" for e in sorted(entries, key=lambda e: e.path) if e.role == "package")
    return hashlib.sha256(lines.encode()).hexdigest()


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel``, refused when a stored path would land outside ``root`` (here, not in backend: checks and backends
    both use it, and checks importing backend closed an import cycle)."""
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve()) + os.sep):
        raise BlobCorrupt(
            f"the catalog lists a file outside the package folder: {rel!r}", "the catalog was tampered with; refusing to write it"
        )
    return target
