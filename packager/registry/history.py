"""Alias history and promotion rules, written inside the same transaction as the alias change they record, so
the history cannot disagree with the alias: every event's ``from`` is the previous event's ``to``, and the last
event's ``to`` is where the alias points (checked by the concurrency test: 8 clients x 50 moves).

A move locks the model's row first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's writer already holds the
database with ``BEGIN IMMEDIATE``), so two concurrent moves of one alias are serialized, not interleaved.
"""

from __future__ import annotations

from typing import Any, Iterable

from packager.errors import UsageError
from packager.registry import audit
from packager.registry import schema as t

RULES = ("validated", "signed")


def lock_model(conn, model_id: int) -> None:
    from sqlalchemy import select

    conn.execute(select(t.models.c.id).where(t.models.c.id == model_id).with_for_update())


def current_target(conn, model_id: int, alias: str) -> int | None:
    from sqlalchemy import select

    return conn.execute(
        select(t.versions.c.version)
        .join(t.aliases, t.aliases.c.version_id == t.versions.c.id)
        .where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias)
    ).scalar()


def record_move(conn, model: str, model_id: int, alias: str, version_id: str | None, version: int | None, message: str | None) -> None:
    """Point ``alias`` at ``version_id`` (None: remove it), append the history event and the audit record."""
    from sqlalchemy import delete

    from packager.registry.rows import now

    lock_model(conn, model_id)
    before = current_target(conn, model_id, alias)
    conn.execute(delete(t.aliases).where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias))
    if version_id is not None:
        conn.execute(t.aliases.insert().values(model_id=model_id, alias=alias, version_id=version_id))
    actor = audit.current_actor()
    conn.execute(
        t.alias_events.insert().values(
            model=model,
            alias=alias,
            time=now().isoformat(timespec="microseconds"),
            actor=actor,
            from_version=before,
            to_version=version,
            message=message,
        )
    )
    action = "alias.remove" if version is None else ("alias.set" if before is None else "alias.move")
    audit.append(
        conn,
        action,
        f"{model}@{alias}",
        None if before is None else {"version": before},
        None if version is None else {"version": version, **({"message": message} if message else {})},
    )


def history(conn, model: str, alias: str | None = None) -> list[dict[str, Any]]:
    from sqlalchemy import select

    query = select(t.alias_events).where(t.alias_events.c.model == model)
    if alias:
        query = query.where(t.alias_events.c.alias == alias)
    return [
        {
            "id": row.id,
            "model": row.model,
            "alias": row.alias,
            "time": row.time,
            "actor": row.actor,
            "from": row.from_version,
            "to": row.to_version,
            "message": row.message,
        }
        for row in conn.execute(query.order_by(t.alias_events.c.id))
    ]


def previous_target(conn, model: str, alias: str) -> int | None:
    """Where the alias pointed before its latest change (None: it had no earlier target). A version deleted since is
    passed over for the one before it: deleting the version an alias points at removes the alias (an event whose
    ``from`` is the deleted version), and rollback then restores the target it had before that version."""
    from sqlalchemy import select

    existing = set(
        conn.execute(
            select(t.versions.c.version).join(t.models, t.models.c.id == t.versions.c.model_id).where(t.models.c.name == model)
        ).scalars()
    )
    events = conn.execute(
        select(t.alias_events.c.from_version)
        .where(t.alias_events.c.model == model, t.alias_events.c.alias == alias)
        .order_by(t.alias_events.c.id.desc())
    )
    for (version,) in events:
        if version is None or version in existing:
            return version
    return None


def check_requires(requires: Iterable[str]) -> list[str]:
    wanted = [r.strip() for r in requires if r.strip()]
    unknown = sorted(set(wanted) - set(RULES))
    if unknown:
        raise UsageError(f"--require {','.join(unknown)}: unknown rule", f"rules are {', '.join(RULES)} (comma-separated)")
    return sorted(set(wanted))


def rules_of(conn, model: str) -> dict[str, list[str]]:
    from sqlalchemy import select

    rows = conn.execute(select(t.alias_rules).where(t.alias_rules.c.model == model)).all()
    return {row.alias: [r for r in row.requires.split(",") if r] for row in rows}


def set_rules(conn, model: str, alias: str, requires: list[str]) -> None:
    from sqlalchemy import delete

    before = rules_of(conn, model).get(alias)
    conn.execute(delete(t.alias_rules).where(t.alias_rules.c.model == model, t.alias_rules.c.alias == alias))
    if requires:
        conn.execute(t.alias_rules.insert().values(model=model, alias=alias, requires=",".join(requires)))
    audit.append(
        conn,
        "alias.protect" if requires else "alias.unprotect",
        f"{model}@{alias}",
        {"requires": before} if before else None,
        {"requires": requires},
    )
