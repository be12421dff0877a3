"""``LocalRegistry``: the registry in a SQL catalog (SQLite or PostgreSQL) and a blob store (a folder
or S3): get, list, search, pull, aliases, tags, delete, gc, verify, lineage; push comes from
``RegistryBackend``. Open one through ``open_registry(url)`` (``Registry`` is the same function).

Blobs first, catalog second: a push uploads every file to the content-addressed store, then records
the version in one transaction. A push killed half-way leaves at most orphan blobs (``gc`` frees
them), never a half-visible version.
"""

from __future__ import annotations

import builtins
import json
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager import settings
from packager.errors import BlobCorrupt, NotFound
from packager.package import staging_dir
from packager.registry import schema as t
from packager.registry.backend import DERIVED_FROM, Files, RegistryBackend, checked_values, default_home, safe_join
from packager.registry.backends import open_registry
from packager.registry.blobs import open_blob_store
from packager.registry.catalog import make_engine, migrate, read, write
from packager.registry.refs import ModelRef, check_alias, check_key, check_name, check_value
from packager.registry.rows import ensure_model, insert_children, move_alias, next_version, now, version_info, version_infos
from packager.registry.versions import FileEntry, VersionInfo, package_digest

__all__ = ["LocalRegistry", "Registry", "default_home"]

Registry = open_registry  # the public name of the README and of earlier releases: open a registry by URL


class LocalRegistry(RegistryBackend):
    """A registry in a catalog database and a blob store. ``url``: catalog database URL (default:
    SQLite under $PACKAGER_HOME); ``blobs``: a folder or ``s3://bucket/prefix`` (default: $PACKAGER_HOME/objects)."""

    def __init__(self, url: str | None = None, blobs: str | None = None):
        home = default_home()
        self.url = url or settings.registry_url() or f"sqlite:///{home / 'catalog.db'}"
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.blobs = open_blob_store(blobs or settings.blobs() or str(home / "objects"))
        self.engine = make_engine(self.url)
        migrate(self.engine)

    # ------------------------------------------------------------------ push
    def record(
        self,
        name: str,
        manifest: Mapping[str, Any],
        entries: list[FileEntry],
        lineage: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
        description: str | None = None,
        parents: Iterable[str] = (),
    ) -> VersionInfo:
        """The catalog half of a push: every blob is already stored; one transaction makes the version visible."""
        check_name(name)
        params, metrics, tags, aliases = checked_values(params, metrics, tags, aliases)
        missing = [e.path for e in entries if not self.blobs.exists(e.digest)]
        if missing:
            raise BlobCorrupt(
                f"cannot record {name}: blobs for {missing[:5]} are not in the store", "upload every file before recording the version"
            )
        parent_ids = list(dict.fromkeys(self.get(parent).id for parent in parents))  # a reference or an id; unknown -> NotFound
        version_id = str(uuid.uuid4())
        size = sum(e.size for e in entries if e.role == "package")
        row = {
            "id": version_id,
            "created": now(),
            "digest": package_digest(entries),
            "format": manifest.get("format", "unknown"),
            "quantization": _quantization(manifest),
            "validation": (manifest.get("validation") or {}).get("status"),
            "size": size,
            "description": description,
            "manifest": json.dumps(manifest),
            "lineage": json.dumps(dict(lineage)),
        }

        def work(conn):
            model_id = ensure_model(conn, name)
            number = next_version(conn, model_id)
            conn.execute(t.versions.insert().values(model_id=model_id, version=number, **row))
            insert_children(conn, version_id, entries, params, metrics, tags, lineage.get("data", []))
            for parent in parent_ids:
                conn.execute(t.edges.insert().values(child_id=version_id, parent_id=parent, relation=DERIVED_FROM))
            for alias in aliases:
                move_alias(conn, model_id, alias, version_id)
            return number

        write(self.engine, work)
        return self.get(version_id)

    def store_files(self, files: Files) -> list[FileEntry]:
        entries = []
        for path, rel, role in files:
            blob = self.blobs.put_file(path)
            entries.append(FileEntry(rel, blob.digest, blob.size, role))
        return entries

    # ------------------------------------------------------------------ read
    def get(self, ref: str | ModelRef) -> VersionInfo:
        """A version by reference (``name``, ``name@3``, ``name@production``, ``name@sha256:…``) or by UUID."""
        with read(self.engine) as conn:
            row = self._resolve(conn, ref)
            return version_info(conn, row)

    def _resolve(self, conn, ref: str | ModelRef):
        from sqlalchemy import select

        base = select(t.versions, t.models.c.name).join(t.models, t.models.c.id == t.versions.c.model_id)
        if isinstance(ref, str) and _is_uuid(ref):
            row = conn.execute(base.where(t.versions.c.id == ref)).first()
            if row is None:
                raise NotFound(f"no version has id {ref}", "list versions with `packager list`")
            return row
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        query = base.where(t.models.c.name == ref.name)
        if ref.version is not None:
            query = query.where(t.versions.c.version == ref.version)
        elif ref.digest:
            query = query.where(t.versions.c.digest == ref.digest)
        elif ref.alias:
            query = query.join(t.aliases, (t.aliases.c.version_id == t.versions.c.id) & (t.aliases.c.alias == ref.alias))
        row = conn.execute(query.order_by(t.versions.c.version.desc()).limit(1)).first()
        if row is None:
            raise NotFound(f"{ref} is not in the registry", f"see `packager list {ref.name}`")
        return row

    def list(self, name: str | None = None, limit: int | None = None) -> list[VersionInfo]:
        """Versions of one model, or the latest version of every model."""
        from sqlalchemy import func, select

        query = select(t.versions, t.models.c.name).join(t.models, t.models.c.id == t.versions.c.model_id)
        if name:
            query = query.where(t.models.c.name == check_name(name)).order_by(t.versions.c.version.desc())
        else:
            latest = select(t.versions.c.model_id, func.max(t.versions.c.version).label("v")).group_by(t.versions.c.model_id).subquery()
            query = query.join(latest, (latest.c.model_id == t.versions.c.model_id) & (latest.c.v == t.versions.c.version)).order_by(
                t.models.c.name
            )
        if limit:
            from packager.registry.query import check_limit

            query = query.limit(check_limit(limit))
        with read(self.engine) as conn:
            return version_infos(conn, conn.execute(query).all())

    def model_summaries(self, names: Iterable[str] | None = None) -> builtins.list[dict[str, Any]]:
        """Per model: version count, the formats of all its versions, in one grouped query (the UI's model list)."""
        from sqlalchemy import func, select

        query = (
            select(t.models.c.name, func.count(t.versions.c.id).label("versions"), t.versions.c.format)
            .join(t.versions, t.versions.c.model_id == t.models.c.id)
            .group_by(t.models.c.name, t.versions.c.format)
        )
        if names is not None:
            query = query.where(t.models.c.name.in_(list(names)))
        summary: dict[str, dict[str, Any]] = {}
        with read(self.engine) as conn:
            for name, count, fmt in conn.execute(query).all():
                entry = summary.setdefault(name, {"name": name, "versions": 0, "formats": []})
                entry["versions"] += count
                entry["formats"].append(fmt)
        return [dict(v, formats=sorted(v["formats"])) for _, v in sorted(summary.items())]

    def search(self, expression: str, limit: int = 100) -> builtins.list[VersionInfo]:
        from sqlalchemy import select

        from packager.registry.query import check_limit, compile_filter, parse

        condition = compile_filter(parse(expression), t)
        check_limit(limit)
        query = (
            select(t.versions, t.models.c.name)
            .join(t.models, t.models.c.id == t.versions.c.model_id)
            .where(condition)
            .order_by(t.models.c.name, t.versions.c.version.desc())
            .limit(limit)
        )
        with read(self.engine) as conn:
            return version_infos(conn, conn.execute(query).all())

    # ------------------------------------------------------------------ pull
    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the package's files to ``out``; every file's digest is checked on the way out."""
        info = self.get(ref)
        destination = Path(out)
        with staging_dir(destination, overwrite) as staging:
            for entry in info.files:
                if entry.role != "package":
                    continue
                target = safe_join(staging, entry.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.blobs.copy_to(entry.digest, target, entry.size)
                except BlobCorrupt as exc:
                    raise BlobCorrupt(f"{info.ref}: {entry.path}: {exc.what}", exc.hint) from None
        return destination.absolute()

    # ------------------------------------------------------------------ change
    def set_alias(self, ref: str | ModelRef, alias: str) -> VersionInfo:
        check_alias(alias)

        def work(conn):
            row = self._resolve(conn, ref)
            move_alias(conn, row.model_id, alias, row.id)
            return row.id

        return self.get(write(self.engine, work))

    def remove_alias(self, name: str, alias: str) -> None:
        from sqlalchemy import delete, select

        check_name(name)
        check_alias(alias)

        def work(conn):
            model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
            done = conn.execute(delete(t.aliases).where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias))
            if not done.rowcount:
                raise NotFound(f"{name} has no alias {alias!r}", f"see `packager show {name}`")

        write(self.engine, work)

    def tag(self, ref: str | ModelRef, tags: Mapping[str, str], remove: Iterable[str] = ()) -> VersionInfo:
        from sqlalchemy import delete

        from packager.registry.checks import refuse_reserved

        tags = {check_key(k, "tag"): check_value(str(v), "tag") for k, v in tags.items()}
        remove = [check_key(k, "tag") for k in remove]
        refuse_reserved([*tags, *remove])

        def work(conn):
            row = self._resolve(conn, ref)
            for key in [*tags, *remove]:
                conn.execute(delete(t.tags).where(t.tags.c.version_id == row.id, t.tags.c.key == key))
            for key, value in tags.items():
                conn.execute(t.tags.insert().values(version_id=row.id, key=key, value=value))
            return row.id

        return self.get(write(self.engine, work))

    def delete(self, ref: str | ModelRef) -> VersionInfo:
        """Remove a version from the catalog (its blobs stay until ``gc``)."""
        from sqlalchemy import delete, func, select

        info = self.get(ref)

        def work(conn):
            for table, column in (
                (t.edges, t.edges.c.child_id),
                (t.edges, t.edges.c.parent_id),
                (t.aliases, t.aliases.c.version_id),
                (t.files, t.files.c.version_id),
                (t.params, t.params.c.version_id),
                (t.metrics, t.metrics.c.version_id),
                (t.tags, t.tags.c.version_id),
                (t.data_refs, t.data_refs.c.version_id),
            ):
                conn.execute(delete(table).where(column == info.id))
            conn.execute(delete(t.versions).where(t.versions.c.id == info.id))
            model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == info.name)).scalar()
            if not conn.execute(select(func.count()).select_from(t.versions).where(t.versions.c.model_id == model_id)).scalar():
                conn.execute(delete(t.models).where(t.models.c.id == model_id))

        write(self.engine, work)
        return info

    # ------------------------------------------------------------------ maintenance
    def referenced_digests(self) -> set[str]:
        from sqlalchemy import select

        with read(self.engine) as conn:
            return set(conn.execute(select(t.files.c.digest).distinct()).scalars())

    def gc(self) -> dict[str, int]:
        """Delete blobs that no version references (left by deletes or killed pushes)."""
        referenced = self.referenced_digests()
        removed = freed = 0
        for digest in list(self.blobs.digests()):
            if digest not in referenced:
                freed += self.blobs.size(digest) or 0
                self.blobs.delete(digest)
                removed += 1
        return {"blobs_removed": removed, "bytes_freed": freed, "temp_files_removed": self.blobs.clean_incoming()}

    def verify(self) -> builtins.list[dict[str, Any]]:
        """Re-hash every referenced blob; one problem row per (version, file) that is missing or corrupt."""
        from sqlalchemy import select

        query = (
            select(t.files.c.digest, t.files.c.path, t.files.c.size, t.models.c.name, t.versions.c.version)
            .join(t.versions, t.versions.c.id == t.files.c.version_id)
            .join(t.models, t.models.c.id == t.versions.c.model_id)
        )
        with read(self.engine) as conn:
            rows = conn.execute(query).all()
        verdicts: dict[str, str | None] = {}
        problems = []
        for row in rows:
            if row.digest not in verdicts:
                actual = self.blobs.rehash(row.digest)
                verdicts[row.digest] = None if actual == row.digest else ("missing" if actual is None else "corrupt")
            if verdicts[row.digest]:
                problems.append(
                    {"ref": f"{row.name}@{row.version}", "path": row.path, "digest": row.digest, "problem": verdicts[row.digest]}
                )
        return problems

    # ------------------------------------------------------------------ lineage
    def lineage(self, ref: str | ModelRef) -> dict[str, Any]:
        """The derivation tree around ``ref``: from its root ancestor down to every descendant."""
        from sqlalchemy import select

        with read(self.engine) as conn:
            start = self._resolve(conn, ref)
            parents = dict(conn.execute(select(t.edges.c.child_id, t.edges.c.parent_id)).all())
            root = start.id
            seen = {root}
            while root in parents and parents[root] not in seen:
                root = parents[root]
                seen.add(root)
            children: dict[str, list[str]] = {}
            for child, parent in parents.items():
                children.setdefault(parent, []).append(child)
            return self._tree(conn, root, children, start.id)

    def _tree(self, conn, node_id: str, children: Mapping[str, builtins.list[str]], focus: str) -> dict[str, Any]:
        info = version_info(conn, self._resolve(conn, node_id), full=False)
        kids = sorted((self._tree(conn, kid, children, focus) for kid in children.get(node_id, [])), key=lambda n: n["version"])
        return {
            "ref": info.ref,
            "version": info.version,
            "format": info.format,
            "quantization": info.quantization,
            "digest": info.digest,
            "focus": node_id == focus,
            "children": kids,
        }

    def find_by_file_digest(self, name: str, digest: str) -> VersionInfo | None:
        from sqlalchemy import select

        query = (
            select(t.versions, t.models.c.name)
            .join(t.models, t.models.c.id == t.versions.c.model_id)
            .join(t.files, t.files.c.version_id == t.versions.c.id)
            .where(t.models.c.name == name, t.files.c.digest == digest, t.files.c.role == "package")
            .order_by(t.versions.c.version)
            .limit(1)
        )
        with read(self.engine) as conn:
            row = conn.execute(query).first()
            return version_info(conn, row) if row else None

    def children_of(self, version_id: str) -> builtins.list[VersionInfo]:
        from sqlalchemy import select

        query = (
            select(t.versions, t.models.c.name)
            .join(t.models, t.models.c.id == t.versions.c.model_id)
            .join(t.edges, t.edges.c.child_id == t.versions.c.id)
            .where(t.edges.c.parent_id == version_id)
            .order_by(t.versions.c.version)
        )
        with read(self.engine) as conn:
            return version_infos(conn, conn.execute(query).all())


# ---------------------------------------------------------------------- helpers


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _quantization(manifest: Mapping[str, Any]) -> str | None:
    quant = manifest.get("quantization") or {}
    return quant.get("mode") if quant.get("applied") else None
