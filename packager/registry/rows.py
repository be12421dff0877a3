"""One version's rows in the catalog (SQLAlchemy Core): the inserts a push makes inside its
transaction, and the batched reads that turn rows back into ``VersionInfo`` values."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from packager.registry import schema as t
from packager.registry.versions import FileEntry, VersionInfo


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def ensure_model(conn, name: str) -> int:
    from sqlalchemy import select

    found = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
    if found is not None:
        return found
    return conn.execute(t.models.insert().values(name=name, created=now()).returning(t.models.c.id)).scalar_one()


def next_version(conn, model_id: int) -> int:
    from sqlalchemy import func, select

    return conn.execute(select(func.coalesce(func.max(t.versions.c.version), 0) + 1).where(t.versions.c.model_id == model_id)).scalar_one()


def insert_children(conn, version_id, entries, params, metrics, tags, data) -> None:
    if entries:
        conn.execute(
            t.files.insert(),
            [{"version_id": version_id, "path": e.path, "digest": e.digest, "size": e.size, "role": e.role} for e in entries],
        )
    if params:
        conn.execute(t.params.insert(), [{"version_id": version_id, "key": k, "value": v} for k, v in params.items()])
    if metrics:
        conn.execute(t.metrics.insert(), [{"version_id": version_id, "key": k, "value": v} for k, v in metrics.items()])
    if tags:
        conn.execute(t.tags.insert(), [{"version_id": version_id, "key": k, "value": v} for k, v in tags.items()])
    if data:
        conn.execute(t.data_refs.insert(), [{"version_id": version_id, **d} for d in data])


def version_infos(conn, rows) -> list[VersionInfo]:
    """Summaries for many versions with four batched look-ups, not four per version."""
    ids = [row.id for row in rows]
    extras = batched_children(conn, ids)
    return [
        build_info(
            row, *(extras[k].get(row.id, {}) for k in ("aliases", "params", "metrics", "tags")), signature=extras["signatures"].get(row.id)
        )
        for row in rows
    ]


def batched_children(conn, ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    found: dict[str, dict[str, Any]] = {"aliases": {}, "params": {}, "metrics": {}, "tags": {}, "signatures": {}}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for alias in conn.execute(select(t.aliases.c.version_id, t.aliases.c.alias).where(t.aliases.c.version_id.in_(chunk))):
            found["aliases"].setdefault(alias.version_id, {})[alias.alias] = True
        for name, table in (("params", t.params), ("metrics", t.metrics), ("tags", t.tags)):
            for row in conn.execute(select(table.c.version_id, table.c.key, table.c.value).where(table.c.version_id.in_(chunk))):
                found[name].setdefault(row.version_id, {})[row.key] = row.value
        signed = (
            select(
                t.signatures.c.version_id,
                t.signatures.c.fingerprint,
                t.signatures.c.signed_at,
                t.signatures.c.signed_by,
                t.trust_keys.c.name,
            )
            .outerjoin(t.trust_keys, t.trust_keys.c.fingerprint == t.signatures.c.fingerprint)
            .where(t.signatures.c.version_id.in_(chunk))
        )
        for sig in conn.execute(signed):
            # signer: the trusted key with this fingerprint (None: not trusted); `pull --verify` checks the files themselves
            found["signatures"][sig.version_id] = {
                "fingerprint": sig.fingerprint,
                "signer": sig.name,
                "signed_at": sig.signed_at,
                "signed_by": sig.signed_by,
            }
    return found


def version_info(conn, row, full: bool = True) -> VersionInfo:
    from sqlalchemy import select

    if not full:
        return version_infos(conn, [row])[0]
    vid = row.id
    extras = batched_children(conn, [vid])
    files = tuple(
        FileEntry(r.path, r.digest, r.size, r.role)
        for r in conn.execute(select(t.files).where(t.files.c.version_id == vid).order_by(t.files.c.path))
    )
    parents = tuple(conn.execute(select(t.edges.c.parent_id).where(t.edges.c.child_id == vid)).scalars())
    return build_info(
        row,
        *(extras[k].get(vid, {}) for k in ("aliases", "params", "metrics", "tags")),
        signature=extras["signatures"].get(vid),
        files=files,
        parents=parents,
        lineage=json.loads(row.lineage),
        manifest=json.loads(row.manifest),
    )


def build_info(row, aliases, params, metrics, tags, **extra) -> VersionInfo:
    created = row.created.isoformat(timespec="seconds") if hasattr(row.created, "isoformat") else str(row.created)
    return VersionInfo(
        row.id,
        row.name,
        row.version,
        created,
        row.digest,
        row.format,
        row.quantization,
        row.validation,
        row.size,
        row.description,
        tuple(sorted(aliases)),
        params,
        metrics,
        tags,
        **extra,
    )
