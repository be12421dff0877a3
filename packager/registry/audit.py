"""The audit log: every write to the registry appends one record (time, actor, action, target, before,
after) in the write's own transaction, and each record's hash covers the previous record's hash, so an
edited, inserted or deleted row breaks the chain at that row (``check_chain``).

The actor is the server's token label (set per request with ``acting``) or, for a local registry, the
user running packager (``local:<login>``; ``PACKAGER_ACTOR`` overrides it for CI jobs).
"""

from __future__ import annotations

import contextvars
import getpass
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

GENESIS = "0" * 64
_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("packager_actor", default=None)


@contextmanager
def acting(label: str) -> Iterator[None]:
    """Attribute the registry writes made inside this block to ``label`` (the server: the token's label)."""
    token = _ACTOR.set(label)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    given = _ACTOR.get()
    if given:
        return given
    from packager import settings

    if settings.actor():
        return str(settings.actor())[:128]
    try:
        return f"local:{getpass.getuser()}"[:128]
    except (KeyError, OSError):  # no passwd entry for this uid (a container)
        return f"local:uid{os.getuid()}"


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def record_hash(seq: int, time: str, actor: str, action: str, target: str, before: str | None, after: str | None, prev: str) -> str:
    """sha256 over the record's fields as stored (JSON text for before/after) and the previous hash, each field
    length-prefixed (``len:text``, ``~`` for NULL) so no two records encode alike. Plain string joins, not json.dumps:
    the chain check over 100,000 records is bound by this function (benchmarks/audit_chain.py)."""
    fields = (str(seq), time, actor, action, target, before, after, prev)
    canonical = "|".join("~" if f is None else f"{len(f)}:{f}" for f in fields)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def append(conn, action: str, target: str, before: Any = None, after: Any = None) -> None:
    """One record after the newest, inside the caller's transaction. Two writers that read the same newest record
    both insert the same ``seq``: one fails on the primary key and ``catalog.write`` retries it on the new head."""
    from sqlalchemy import select

    from packager.registry import schema as t
    from packager.registry.rows import now

    head = conn.execute(select(t.audit.c.seq, t.audit.c.hash).order_by(t.audit.c.seq.desc()).limit(1)).first()
    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
    time = now().isoformat(timespec="microseconds")
    actor = current_actor()
    before_text, after_text = _text(before), _text(after)
    digest = record_hash(seq, time, actor, action, target, before_text, after_text, prev)
    conn.execute(
        t.audit.insert().values(
            seq=seq, time=time, actor=actor, action=action, target=target, before=before_text, after=after_text, prev_hash=prev, hash=digest
        )
    )


def check_chain(rows: Iterable[Any], anchor: tuple[int, str] | None = None) -> dict[str, Any]:
    """Walk the records in ``seq`` order. Returns ``{"records": n, "ok": bool, "first_bad": seq|None, "reason": str}``:
    the first record whose stored hash is not the hash of its fields, whose ``prev_hash`` is not the previous record's
    hash, or whose ``seq`` skips (a deleted row); with ``anchor`` (seq, hash: a head kept outside the registry), also the
    record at that seq when its hash differs (the chain was rewritten) or it is gone (the newest records were deleted)."""
    prev, expected_seq, count = GENESIS, 1, 0
    for row in rows:
        count += 1
        seq, time, actor, action, target, before, after, prev_hash, stored = row
        if seq != expected_seq:
            return _bad(count, expected_seq, f"record {expected_seq} is missing (the next one is {seq})")
        if prev_hash != prev:
            return _bad(count, seq, f"record {seq} does not chain to record {seq - 1} (prev_hash differs)")
        if record_hash(seq, time, actor, action, target, before, after, prev_hash) != stored:
            return _bad(count, seq, f"record {seq} ({action} {target}) does not match its hash: it was edited")
        if anchor is not None and seq == anchor[0] and stored != anchor[1]:
            return _bad(count, seq, f"record {seq} is not the anchored one: the chain was rewritten up to it")
        prev, expected_seq = stored, seq + 1
    if anchor is not None and anchor[0] >= expected_seq:
        return _bad(count, expected_seq, f"record {anchor[0]} (anchored) is missing: the newest records were deleted")
    # the head, to keep outside the registry: a chain rewritten from an edited row on, or cut short, still checks here
    # (nothing in the database can tell), but no longer holds the head kept elsewhere (redteam24)
    head = f"{expected_seq - 1}:{prev}" if count else ""
    return {"records": count, "ok": True, "first_bad": None, "reason": "", "head": head}


def parse_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not (seq.isascii() and seq.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        from packager.errors import UsageError

        raise UsageError(f"--anchor {text!r} is not SEQ:HASH", "give the head `packager verify` printed, e.g. 1234:<64 hex digits>")
    return int(seq), digest


def _bad(count: int, seq: int, reason: str) -> dict[str, Any]:
    return {"records": count, "ok": False, "first_bad": seq, "reason": reason, "head": ""}


def decode(row: Any) -> AuditRecord:
    return AuditRecord(
        row.seq,
        row.time,
        row.actor,
        row.action,
        row.target,
        json.loads(row.before) if row.before else None,
        json.loads(row.after) if row.after else None,
        row.prev_hash,
        row.hash,
    )
