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
from packager.errors import BlobCorrupt, CatalogError, NotFound, SignatureRefused, UsageError
from packager.package import staging_dir
from packager.registry import audit, history
from packager.registry import schema as t
from packager.registry.backend import DERIVED_FROM, Files, RegistryBackend, checked_values, default_home, safe_join
from packager.registry.backends import open_registry
from packager.registry.blobs import open_blob_store
from packager.registry.catalog import make_engine, migrate, read, write
from packager.registry.refs import ModelRef, check_alias, check_key, check_name, check_value
from packager.registry.rows import ensure_model, insert_children, next_version, now, version_info, version_infos
from packager.registry.signing import SIGNATURE_FILE, Signature, TrustedKey
from packager.registry.versions import FileEntry, VersionInfo, package_digest

__all__ = ["LocalRegistry", "Registry", "default_home"]

Registry = open_registry  # the public name of the README and of earlier releases: open a registry by URL


def check_catalog_folder(url: str | None) -> None:
    """A SQLite catalog URL the user gave must name a file in an existing folder: a typo must not become a new registry
    (`--registry sqlite:////nonexistent/x.db` made /nonexistent/ and an empty catalog, and the push "succeeded" into it,
    issue 23 D15). A new registry starts where its folder exists (the first push creates the catalog file); only the
    embedded default under $PACKAGER_HOME is created with its folders. Other URLs (PostgreSQL, a server) pass."""
    if url and url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :].split("?")[0]).parent
        if not folder.is_dir():
            raise CatalogError(
                f"registry {url}: folder {folder} does not exist",
                "correct --registry / PACKAGER_REGISTRY, or create the folder first to start a new registry there",
            )


class LocalRegistry(RegistryBackend):
    """A registry in a catalog database and a blob store. ``url``: catalog database URL (default:
    SQLite under $PACKAGER_HOME); ``blobs``: a folder or ``s3://bucket/prefix`` (default: $PACKAGER_HOME/objects)."""

    supports_trust = True
    require_signatures = False  # `packager serve --require-signatures`: record() refuses a version not signed by a trusted key

    def __init__(self, url: str | None = None, blobs: str | None = None):
        home = default_home()
        embedded = f"sqlite:///{home / 'catalog.db'}"
        self.url = url or settings.registry_url() or embedded
        if self.url == embedded:  # the embedded default under $PACKAGER_HOME is made on first use
            home.mkdir(parents=True, exist_ok=True)
        check_catalog_folder(self.url)
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
        signature: Signature | None = None,
    ) -> VersionInfo:
        """The catalog half of a push: every blob is already stored; one transaction makes the version visible."""
        check_name(name)
        params, metrics, tags, aliases = checked_values(params, metrics, tags, aliases)
        missing = [e.path for e in entries if not self.blobs.exists(e.digest)]
        if missing:
            raise BlobCorrupt(
                f"cannot record {name}: blobs for {missing[:5]} are not in the store", "upload every file before recording the version"
            )
        if any(e.path == SIGNATURE_FILE and e.role == "package" for e in entries):
            raise UsageError(f"a package file may not be called {SIGNATURE_FILE}", "the registry writes the signature there on pull")
        rules = self.alias_rules(name) if aliases else {}
        # any signature is checked against the files before it is stored: `show` names a trusted signer by the bundle's key
        # hint, so a replayed or forged bundle stored unchecked read "signer: alice" for files alice never signed (redteam24)
        judged = self.require_signatures or signature is not None
        signer = self._check_signature(name, entries, signature) if judged else None  # copies and hashes the files: only when needed
        for alias in aliases:
            if rules.get(alias):
                self._check_promotion(f"{name} (new version)", alias, rules[alias], manifest_validation(manifest), signer)
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
            if signature is not None:
                conn.execute(t.signatures.insert().values(version_id=version_id, **_signature_row(signature)))
            audit.append(
                conn,
                "push",
                f"{name}@{number}",
                None,
                {"id": version_id, "digest": row["digest"], "signed": signature.fingerprint if signature else None},
            )
            for alias in aliases:
                history.record_move(conn, name, model_id, alias, version_id, number, None)
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
    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False, verify: str | None = None) -> Path:
        """Write the package's files (and its signature as model.sig) to ``out``; every file's digest is checked on
        the way out, then the trust policy ``verify`` (required | if-signed | off; default $PACKAGER_VERIFY, else
        if-signed) on the staged folder: a refusal leaves nothing at ``out``."""
        from packager.registry.signing import check, policy_of

        policy = policy_of(verify)
        info = self.get(ref)
        destination = Path(out)
        with staging_dir(destination, overwrite) as staging:
            self._materialize(info, staging)
            check(staging, info.ref, policy, self.trust_list(with_keys=True))
        return destination.absolute()

    def _materialize(self, info: VersionInfo, folder: Path) -> None:
        for entry in info.files:
            if entry.role != "package":
                continue
            target = safe_join(folder, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.blobs.copy_to(entry.digest, target, entry.size)
            except BlobCorrupt as exc:
                raise BlobCorrupt(f"{info.ref}: {entry.path}: {exc.what}", exc.hint) from None
        bundle = self.signature_bundle(info.id)
        if bundle is not None:
            (folder / SIGNATURE_FILE).write_text(bundle)

    # ------------------------------------------------------------------ change
    def set_alias(self, ref: str | ModelRef, alias: str, *, message: str | None = None) -> VersionInfo:
        """Point ``alias`` at ``ref``, after the alias's promotion rules (``protect_alias``) pass; recorded in its history."""
        check_alias(alias)
        message = _message(message)
        target = self.get(ref)
        requires = self.alias_rules(target.name).get(alias)
        if requires:
            self._check_promotion(target.ref, alias, requires, target.validation, self._trusted_signer(target))

        def work(conn):
            row = self._resolve(conn, target.id)
            history.record_move(conn, row.name, row.model_id, alias, row.id, row.version, message)
            return row.id

        return self.get(write(self.engine, work))

    def remove_alias(self, name: str, alias: str, *, message: str | None = None) -> None:
        from sqlalchemy import select

        check_name(name)
        check_alias(alias)
        message = _message(message)

        def work(conn):
            model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
            if model_id is None or history.current_target(conn, model_id, alias) is None:
                raise NotFound(f"{name} has no alias {alias!r}", f"see `packager show {name}`")
            history.record_move(conn, name, model_id, alias, None, None, message)

        write(self.engine, work)

    # ------------------------------------------------------------------ alias history, rollback, promotion rules
    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every set, move and removal of the aliases of ``name`` (or of one alias), oldest first."""
        check_name(name)
        if alias:
            check_alias(alias)
        with read(self.engine) as conn:
            return history.history(conn, name, alias)

    def rollback_alias(self, name: str, alias: str, *, message: str | None = None) -> VersionInfo:
        """Move ``alias`` back to the version it pointed at before its latest change (the promotion rules apply)."""
        check_name(name)
        check_alias(alias)
        with read(self.engine) as conn:
            previous = history.previous_target(conn, name, alias)
        if previous is None:
            raise NotFound(f"{name}@{alias} has no earlier target to roll back to", f"see `packager alias history {name} {alias}`")
        return self.set_alias(f"{name}@{previous}", alias, message=message or f"rollback to {name}@{previous}")

    def alias_rules(self, name: str) -> dict[str, builtins.list[str]]:
        with read(self.engine) as conn:
            return history.rules_of(conn, check_name(name))

    def protect_alias(self, name: str, alias: str, requires: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Promotion rules for ``alias``: ``validated`` (the version's validation passed), ``signed`` (signed by a trusted
        key, checked against the files); an empty list removes the rules."""
        check_name(name)
        check_alias(alias)
        wanted = history.check_requires(requires)
        write(self.engine, lambda conn: history.set_rules(conn, name, alias, wanted))
        return self.alias_rules(name)

    def _check_promotion(self, label: str, alias: str, requires: Iterable[str], validation: str | None, signer: str | None) -> None:
        from packager.errors import PromotionRefused

        failing = []
        if "validated" in requires and validation != "passed":
            failing.append(f"its validation is {validation or 'not recorded'}, not passed")
        if "signed" in requires and signer is None:
            failing.append("it is not signed by a trusted key")
        if failing:
            raise PromotionRefused(
                f"{alias} is protected (requires {','.join(requires)}): {label} cannot take it: {'; '.join(failing)}",
                "promote a version that meets the rules, or change them with `packager alias protect`",
            )

    def _trusted_signer(self, info: VersionInfo) -> str | None:
        """The trusted key name whose signature verifies this version's files now (None otherwise)."""
        import tempfile

        from packager.registry.signing import check

        if not self.signature_bundle(info.id):
            return None
        with tempfile.TemporaryDirectory(prefix="packager-promote-") as work:
            folder = Path(work) / "package"
            folder.mkdir()
            self._materialize(info, folder)
            try:
                return check(folder, info.ref, "required", self.trust_list(with_keys=True)).removeprefix("signed by ")
            except SignatureRefused:
                return None

    # ------------------------------------------------------------------ signatures and trusted keys
    def _check_signature(self, name: str, entries: builtins.list[FileEntry], signature: Signature | None) -> str | None:
        """The trusted signer of files about to be recorded. A signature by a trusted key that does not match the files
        (replayed from another version, or a forged key hint) is refused (SignatureRefused); with ``require_signatures``
        so is a missing or untrusted one. An untrusted key's signature is kept unjudged (None): trust may come later."""
        import tempfile

        from packager.registry.signing import check

        if signature is None:
            raise SignatureRefused(f"this registry requires signed pushes and {name} is not signed", "push with --sign-key KEY.pem")
        with tempfile.TemporaryDirectory(prefix="packager-record-") as work:
            folder = Path(work) / "package"
            folder.mkdir()
            for entry in entries:
                if entry.role == "package":
                    target = safe_join(folder, entry.path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.blobs.copy_to(entry.digest, target, entry.size)
            (folder / SIGNATURE_FILE).write_text(signature.bundle)
            trusted = self.trust_list(with_keys=True)
            try:
                return check(folder, name, "required", trusted).removeprefix("signed by ")
            except SignatureRefused:
                if self.require_signatures or any(k.fingerprint == signature.fingerprint for k in trusted):
                    raise
                return None

    def sign(self, ref: str | ModelRef, signature: Signature) -> VersionInfo:
        """Store ``signature`` (made over the version's files) with the version, replacing any earlier one."""
        from sqlalchemy import delete, select

        info = self.get(ref)
        self._check_signature(info.ref, builtins.list(info.files), signature)  # a trusted key's signature must match the files

        def work(conn):
            old = conn.execute(select(t.signatures.c.fingerprint).where(t.signatures.c.version_id == info.id)).scalar()
            conn.execute(delete(t.signatures).where(t.signatures.c.version_id == info.id))
            conn.execute(t.signatures.insert().values(version_id=info.id, **_signature_row(signature)))
            audit.append(conn, "sign", info.ref, {"fingerprint": old} if old else None, {"fingerprint": signature.fingerprint})

        write(self.engine, work)
        return self.get(info.id)

    def signature_bundle(self, ref: str | ModelRef) -> str | None:
        from sqlalchemy import select

        version_id = ref if isinstance(ref, str) and _is_uuid(ref) else self.get(ref).id
        with read(self.engine) as conn:
            return conn.execute(select(t.signatures.c.bundle).where(t.signatures.c.version_id == version_id)).scalar()

    def trust_add(self, name: str, public_key_pem: str) -> TrustedKey:
        from sqlalchemy import select

        from packager.registry.signing import fingerprint

        check_name(name)
        key = TrustedKey(name, fingerprint(public_key_pem), public_key_pem, now().isoformat(timespec="seconds"), audit.current_actor())

        def work(conn):
            for column, value, what in ((t.trust_keys.c.name, name, "name"), (t.trust_keys.c.fingerprint, key.fingerprint, "key")):
                holder = conn.execute(select(t.trust_keys.c.name).where(column == value)).scalar()
                if holder is not None:
                    raise UsageError(f"the {what} is already trusted as {holder!r}", f"remove it first with `packager trust rm {holder}`")
            conn.execute(t.trust_keys.insert().values(**key.to_dict(with_key=True)))
            audit.append(conn, "trust.add", name, None, {"fingerprint": key.fingerprint})

        write(self.engine, work)
        return key

    def trust_list(self, *, with_keys: bool = False) -> builtins.list[TrustedKey]:
        from sqlalchemy import select

        with read(self.engine) as conn:
            rows = conn.execute(select(t.trust_keys).order_by(t.trust_keys.c.name)).all()
        return [TrustedKey(r.name, r.fingerprint, r.public_key if with_keys else "", r.added, r.added_by) for r in rows]

    def trust_remove(self, name: str) -> None:
        from sqlalchemy import delete, select

        def work(conn):
            found = conn.execute(select(t.trust_keys.c.fingerprint).where(t.trust_keys.c.name == name)).scalar()
            if found is None:
                raise NotFound(f"no trusted key is named {name!r}", "see `packager trust list`")
            conn.execute(delete(t.trust_keys).where(t.trust_keys.c.name == name))
            audit.append(conn, "trust.remove", name, {"fingerprint": found}, None)

        write(self.engine, work)

    # ------------------------------------------------------------------ audit log
    def audit_log(self, name: str | None = None, since: str | None = None, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Audit records, oldest first: all, those whose target is model ``name`` (or a trust key so named), after ``since``."""
        from sqlalchemy import or_, select

        query = select(t.audit).order_by(t.audit.c.seq)
        if name:
            check_name(name)
            query = query.where(or_(t.audit.c.target == name, t.audit.c.target.like(f"{_like(name)}@%", escape="\\")))
        if since:
            query = query.where(t.audit.c.time >= _since(since))
        if limit:
            query = query.limit(limit)
        with read(self.engine) as conn:
            return [audit.decode(row).to_dict() for row in conn.execute(query)]

    def verify_audit(self, anchor: str | None = None) -> dict[str, Any]:
        """Walk the hash chain: ``{"records", "ok", "first_bad", "reason", "head"}``; ``anchor`` is a head kept elsewhere
        (``SEQ:HASH``, as ``head`` gives it), which must still be in the chain. Rows come through the driver's cursor in
        batches: SQLAlchemy's Row objects cost more than the hashing (3.0 s vs 0.5 s for 100,000 records, measured)."""
        query = "SELECT seq, time, actor, action, target, before, after, prev_hash, hash FROM audit ORDER BY seq"
        with read(self.engine) as conn:
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(query)
                return audit.check_chain(_batches(cursor), audit.parse_anchor(anchor) if anchor else None)
            finally:
                cursor.close()

    def tag(self, ref: str | ModelRef, tags: Mapping[str, str], remove: Iterable[str] = ()) -> VersionInfo:
        from sqlalchemy import delete

        from packager.registry.checks import refuse_reserved

        tags = {check_key(k, "tag"): check_value(str(v), "tag") for k, v in tags.items()}
        remove = [check_key(k, "tag") for k in remove]
        refuse_reserved([*tags, *remove])

        def work(conn):
            row = self._resolve(conn, ref)
            audit.append(conn, "tag", f"{row.name}@{row.version}", None, {"set": tags, "remove": remove})
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
            audit.append(conn, "delete", info.ref, {"id": info.id, "digest": info.digest, "aliases": list(info.aliases)}, None)
            model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == info.name)).scalar()
            for alias in info.aliases:  # each removal in the alias's history too: it ended saying the alias still pointed here
                history.record_move(conn, info.name, model_id, alias, None, None, f"{info.ref} deleted")
            for table, column in (
                (t.signatures, t.signatures.c.version_id),
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
        result = {"blobs_removed": removed, "bytes_freed": freed, "temp_files_removed": self.blobs.clean_incoming()}
        write(self.engine, lambda conn: audit.append(conn, "gc", "blobs", None, result))
        return result

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


def _batches(cursor, size: int = 10_000):
    while rows := cursor.fetchmany(size):
        yield from rows


def _signature_row(signature: Signature) -> dict[str, str]:
    return {
        "bundle": signature.bundle,
        "fingerprint": signature.fingerprint,
        "signed_at": now().isoformat(timespec="seconds"),
        "signed_by": audit.current_actor(),
    }


def manifest_validation(manifest: Mapping[str, Any]) -> str | None:
    return (manifest.get("validation") or {}).get("status")


def _message(message: str | None) -> str | None:
    if message is None:
        return None
    return check_value(message, "message")


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _since(text: str) -> str:
    """An ISO date or time, as the audit log stores it (UTC); a bad one is a UsageError."""
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r} is not an ISO date or time", "e.g. 2026-12-01 or 2026-12-01T08:00:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def _quantization(manifest: Mapping[str, Any]) -> str | None:
    quant = manifest.get("quantization") or {}
    return quant.get("mode") if quant.get("applied") else None
