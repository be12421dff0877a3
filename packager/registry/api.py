"""``Registry(url)``: push, pull, get, list, search, aliases, tags, delete, gc, verify, lineage.

Blobs first, catalog second: a push uploads every file to the content-addressed store, then records
the version in one transaction. A push killed half-way leaves at most orphan blobs (``gc`` frees
them), never a half-visible version.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import BlobCorrupt, InputFileError, NotFound, UsageError
from packager.package import MANIFEST, staging_dir
from packager.registry import lineage as lineage_capture
from packager.registry import schema as t
from packager.registry.blobs import open_blob_store
from packager.registry.catalog import make_engine, migrate, read, write
from packager.registry.refs import ModelRef, check_alias, check_key, check_name, check_value
from packager.registry.rows import ensure_model, insert_children, move_alias, next_version, now, version_info, version_infos
from packager.registry.versions import FileEntry, VersionInfo, package_digest

DERIVED_FROM = "derived-from"


def default_home() -> Path:
    return Path(os.environ.get("PACKAGER_HOME") or Path.home() / ".packager")


class Registry:
    """The model registry. ``url``: catalog database URL (default: SQLite under $PACKAGER_HOME);
    ``blobs``: a folder or ``s3://bucket/prefix`` (default: $PACKAGER_HOME/objects)."""

    def __new__(cls, url: str | None = None, blobs: str | None = None, **kwargs: Any):
        """``Registry("http://host:port")`` (or PACKAGER_REGISTRY) is a client of a `packager serve` server."""
        url = url or os.environ.get("PACKAGER_REGISTRY")
        if cls is Registry and url and url.startswith(("http://", "https://")):
            from packager.registry.remote import RemoteRegistry

            return super().__new__(RemoteRegistry)
        return super().__new__(cls)

    def __init__(self, url: str | None = None, blobs: str | None = None):
        home = default_home()
        self.url = url or os.environ.get("PACKAGER_REGISTRY") or f"sqlite:///{home / 'catalog.db'}"
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.blobs = open_blob_store(blobs or os.environ.get("PACKAGER_BLOBS") or str(home / "objects"))
        self.engine = make_engine(self.url)
        migrate(self.engine)

    # ------------------------------------------------------------------ push
    def push(self, package_dir: str | Path, name: str, *, params: Mapping[str, Any] | None = None,
             metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None,
             aliases: Iterable[str] = (), data: Iterable[str] = (), dockerfile: str | Path | None = None,
             conda_env: str | Path | None = None, description: str | None = None, parents: Iterable[str] = (),
             lineage: Mapping[str, Any] | None = None, capture_cwd: str | Path | None = None) -> VersionInfo:
        """Store a package directory as the next version of ``name``."""
        check_name(name)
        package_dir = Path(package_dir)
        manifest = _read_manifest(package_dir)
        _checked_values(params, metrics, tags, aliases)  # bad values fail before any upload
        freezing = threading.Thread(target=lineage_capture.pip_freeze, daemon=True)  # overlaps the uploads
        freezing.start()
        entries = self._store_many([(path, rel, "package") for rel, path in _package_files(package_dir)])
        freezing.join()
        record, extra = self._lineage(manifest, data, dockerfile, conda_env, lineage, capture_cwd)
        return self.record(name, manifest, entries + extra, record, params=params, metrics=metrics, tags=tags, aliases=aliases,
                           description=description, parents=parents)

    def record(self, name: str, manifest: Mapping[str, Any], entries: list[FileEntry], lineage: Mapping[str, Any], *,
               params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None,
               aliases: Iterable[str] = (), description: str | None = None, parents: Iterable[str] = ()) -> VersionInfo:
        """The catalog half of a push: every blob is already stored; one transaction makes the version visible."""
        check_name(name)
        params, metrics, tags, aliases = _checked_values(params, metrics, tags, aliases)
        missing = [e.path for e in entries if not self.blobs.exists(e.digest)]
        if missing:
            raise BlobCorrupt(f"cannot record {name}: blobs for {missing[:5]} are not in the store", "upload every file before recording the version")
        parent_ids = list(dict.fromkeys(self.get(parent).id for parent in parents))  # a reference or an id; unknown -> NotFound
        version_id = str(uuid.uuid4())
        size = sum(e.size for e in entries if e.role == "package")
        row = {"id": version_id, "created": now(), "digest": package_digest(entries), "format": manifest.get("format", "unknown"),
               "quantization": _quantization(manifest), "validation": (manifest.get("validation") or {}).get("status"),
               "size": size, "description": description, "manifest": json.dumps(manifest), "lineage": json.dumps(dict(lineage))}

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

    def _store(self, path: Path, rel: str, role: str) -> FileEntry:
        blob = self.blobs.put_file(path)
        return FileEntry(rel, blob.digest, blob.size, role)

    def _store_many(self, files: list[tuple[Path, str, str]]) -> list[FileEntry]:
        """(path, relative name, role) -> entries; a remote registry overrides this to upload only missing blobs."""
        return [self._store(path, rel, role) for path, rel, role in files]

    def _lineage(self, manifest, data, dockerfile, conda_env, override, cwd) -> tuple[dict, list[FileEntry]]:
        record: dict[str, Any] = {
            "captured": now().isoformat(timespec="seconds"),
            "git": lineage_capture.git_info(Path(cwd or Path.cwd())),
            "environment": lineage_capture.environment(manifest.get("versions", {})),
            "data": [lineage_capture.data_reference(uri) for uri in data],
        }
        extra: list[FileEntry] = []
        with tempfile.TemporaryDirectory() as work:
            freeze = Path(work) / "pip-freeze.txt"
            freeze.write_text(lineage_capture.pip_freeze())
            files = {"pip_freeze": ("lineage/pip-freeze.txt", freeze)}
            for key, given, rel in (("dockerfile", dockerfile, "lineage/Dockerfile"), ("conda_env", conda_env, "lineage/environment.yml")):
                if given:
                    if not Path(given).is_file():
                        raise InputFileError(f"--{key.replace('_', '-')} {given}: no such file", "give an existing file")
                    files[key] = (rel, Path(given))
            for key, (rel, path) in files.items():
                entry = self._store(path, rel, "lineage")
                extra.append(entry)
                record[key] = {"path": rel, "sha256": entry.digest}
        record.update(dict(override or {}))
        return record, extra

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
            query = query.join(latest, (latest.c.model_id == t.versions.c.model_id) & (latest.c.v == t.versions.c.version)).order_by(t.models.c.name)
        if limit:
            from packager.registry.query import check_limit

            query = query.limit(check_limit(limit))
        with read(self.engine) as conn:
            return version_infos(conn, conn.execute(query).all())

    def model_summaries(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per model: version count, the formats of all its versions, in one grouped query (the UI's model list)."""
        from sqlalchemy import func, select

        query = (select(t.models.c.name, func.count(t.versions.c.id).label("versions"), t.versions.c.format)
                 .join(t.versions, t.versions.c.model_id == t.models.c.id).group_by(t.models.c.name, t.versions.c.format))
        if names is not None:
            query = query.where(t.models.c.name.in_(list(names)))
        summary: dict[str, dict[str, Any]] = {}
        with read(self.engine) as conn:
            for name, count, fmt in conn.execute(query).all():
                entry = summary.setdefault(name, {"name": name, "versions": 0, "formats": []})
                entry["versions"] += count
                entry["formats"].append(fmt)
        return [dict(v, formats=sorted(v["formats"])) for _, v in sorted(summary.items())]

    def search(self, expression: str, limit: int = 100) -> list[VersionInfo]:
        from sqlalchemy import select

        from packager.registry.query import check_limit, compile_filter, parse

        condition = compile_filter(parse(expression), t)
        limit = check_limit(limit)
        query = (select(t.versions, t.models.c.name).join(t.models, t.models.c.id == t.versions.c.model_id)
                 .where(condition).order_by(t.models.c.name, t.versions.c.version.desc()).limit(limit))
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
                target = _safe_join(staging, entry.path)
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

        tags = {check_key(k, "tag"): check_value(str(v), "tag") for k, v in tags.items()}
        remove = [check_key(k, "tag") for k in remove]

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
            for table, column in ((t.edges, t.edges.c.child_id), (t.edges, t.edges.c.parent_id), (t.aliases, t.aliases.c.version_id),
                                  (t.files, t.files.c.version_id), (t.params, t.params.c.version_id), (t.metrics, t.metrics.c.version_id),
                                  (t.tags, t.tags.c.version_id), (t.data_refs, t.data_refs.c.version_id)):
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

    def verify(self) -> list[dict[str, Any]]:
        """Re-hash every referenced blob; one problem row per (version, file) that is missing or corrupt."""
        from sqlalchemy import select

        query = (select(t.files.c.digest, t.files.c.path, t.files.c.size, t.models.c.name, t.versions.c.version)
                 .join(t.versions, t.versions.c.id == t.files.c.version_id).join(t.models, t.models.c.id == t.versions.c.model_id))
        with read(self.engine) as conn:
            rows = conn.execute(query).all()
        verdicts: dict[str, str | None] = {}
        problems = []
        for row in rows:
            if row.digest not in verdicts:
                actual = self.blobs.rehash(row.digest)
                verdicts[row.digest] = None if actual == row.digest else ("missing" if actual is None else "corrupt")
            if verdicts[row.digest]:
                problems.append({"ref": f"{row.name}@{row.version}", "path": row.path, "digest": row.digest, "problem": verdicts[row.digest]})
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

    def _tree(self, conn, node_id: str, children: Mapping[str, list[str]], focus: str) -> dict[str, Any]:
        info = version_info(conn, self._resolve(conn, node_id), full=False)
        kids = sorted((self._tree(conn, kid, children, focus) for kid in children.get(node_id, [])), key=lambda n: n["version"])
        return {"ref": info.ref, "version": info.version, "format": info.format, "quantization": info.quantization,
                "digest": info.digest, "focus": node_id == focus, "children": kids}

    def push_conversion(self, package, name: str, source_path: str | Path, *, trust: bool = False, source_options: dict | None = None, **push_args) -> VersionInfo:
        """Push a converted package with a derived-from edge to its source (pushed first when not yet stored).

        A quantized artifact derives from the newest unquantized version of the same format made from
        that source, when there is one, so lineage reads source -> ONNX -> int8 ONNX. ``source_options``
        (sample, input_shape, model_class) are what the source needs to be loaded and described.
        """
        from packager.conversion import package_source

        digest = package.manifest.source.sha256
        source_version = self.find_by_file_digest(name, digest) if digest else None
        if source_version is None:
            with tempfile.TemporaryDirectory() as work:
                source_package = package_source(source_path, Path(work) / "source", trust=trust, **(source_options or {}))
                source_version = self.push(source_package.path, name, description=f"source model {Path(source_path).name}")
        parent = source_version
        if package.manifest.quantization.applied:
            siblings = [v for v in self.children_of(source_version.id) if v.format == package.manifest.format and not v.quantization]
            parent = siblings[-1] if siblings else source_version
        return self.push(package.path, name, parents=[parent.id], **push_args)

    def find_by_file_digest(self, name: str, digest: str) -> VersionInfo | None:
        from sqlalchemy import select

        query = (select(t.versions, t.models.c.name).join(t.models, t.models.c.id == t.versions.c.model_id)
                 .join(t.files, t.files.c.version_id == t.versions.c.id)
                 .where(t.models.c.name == name, t.files.c.digest == digest, t.files.c.role == "package")
                 .order_by(t.versions.c.version).limit(1))
        with read(self.engine) as conn:
            row = conn.execute(query).first()
            return version_info(conn, row) if row else None

    def children_of(self, version_id: str) -> list[VersionInfo]:
        from sqlalchemy import select

        query = (select(t.versions, t.models.c.name).join(t.models, t.models.c.id == t.versions.c.model_id)
                 .join(t.edges, t.edges.c.child_id == t.versions.c.id).where(t.edges.c.parent_id == version_id)
                 .order_by(t.versions.c.version))
        with read(self.engine) as conn:
            return version_infos(conn, conn.execute(query).all())


# ---------------------------------------------------------------------- helpers

def _checked_values(params, metrics, tags, aliases) -> tuple[dict, dict, dict, list]:
    return ({check_key(k, "param"): check_value(str(v), "param") for k, v in (params or {}).items()},
            {check_key(k, "metric"): _number(k, v) for k, v in (metrics or {}).items()},
            {check_key(k, "tag"): check_value(str(v), "tag") for k, v in (tags or {}).items()},
            [check_alias(a) for a in aliases])


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"metric {key}={value!r} is not a number", "metrics are numbers; use --param or --tag for text") from None
    if not math.isfinite(number):  # JSON cannot carry it, and no comparison means anything
        raise UsageError(f"metric {key}={value!r} is not a finite number", "record NaN or infinite results as a tag")
    return number


def _quantization(manifest: Mapping[str, Any]) -> str | None:
    quant = manifest.get("quantization") or {}
    return quant.get("mode") if quant.get("applied") else None


def _read_manifest(package_dir: Path) -> dict[str, Any]:
    path = package_dir / MANIFEST
    if not path.is_file():
        raise InputFileError(f"{package_dir} is not a package (no {MANIFEST})", "push a folder written by `packager convert -o DIR`")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc})", "re-create the package with `packager convert`") from None


def _package_files(package_dir: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_symlink():
            raise InputFileError(f"{path} is a symlink", "packages hold regular files only")
        if path.is_file():
            files.append((path.relative_to(package_dir).as_posix(), path))
    return files


def _safe_join(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve()) + os.sep):
        raise BlobCorrupt(f"the catalog lists a file outside the package folder: {rel!r}", "the catalog was tampered with; refusing to write it")
    return target
