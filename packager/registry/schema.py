"""The catalog's tables (SQLAlchemy Core). Changes go through a new Alembic migration in migrations/."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("digest", String(64), nullable=False),  # sha256 over the package's (path, file digest) list
    Column("format", String(32), nullable=False),
    Column("quantization", String(32)),
    Column("validation", String(48)),
    Column("size", BigInteger, nullable=False),
    Column("description", Text),
    Column("manifest", Text, nullable=False),
    Column("lineage", Text, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
)
Index("ix_versions_digest", versions.c.digest)

files = Table(
    "files",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(512), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),  # package | lineage
)
Index("ix_files_digest", files.c.digest)

params = Table(
    "params",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Float, nullable=False),
)
Index("ix_metrics_key_value", metrics.c.key, metrics.c.value)

tags = Table(
    "tags",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
Index("ix_tags_key", tags.c.key)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
)

edges = Table(
    "edges",
    metadata,
    Column("child_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("relation", String(32), primary_key=True),
)
Index("ix_edges_parent", edges.c.parent_id)

data_refs = Table(
    "data_refs",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("uri", String(1024), primary_key=True),
    Column("sha256", String(64)),
    Column("size", BigInteger),
    Column("rows", BigInteger),
)

# ---------------------------------------------------------------------- trust (migration 0002)
# Keyed by names and references as text, not foreign keys: the history and the audit log must outlive the
# versions and models they speak of (a deleted version's alias moves stay on record).

signatures = Table(
    "signatures",
    metadata,
    Column("version_id", String(36), ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("bundle", Text, nullable=False),  # the OpenSSF model-signing bundle (Sigstore bundle JSON), written as model.sig
    Column("fingerprint", String(64), nullable=False),  # sha256 of the public key's PEM: the bundle's own key hint
    Column("signed_at", String(40), nullable=False),
    Column("signed_by", String(128), nullable=False),  # who stored it (token label or local user), not who holds the key
)

trust_keys = Table(
    "trust_keys",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("public_key", Text, nullable=False),
    Column("added", String(40), nullable=False),
    Column("added_by", String(128), nullable=False),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("time", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_version", Integer),  # None: the alias was created
    Column("to_version", Integer),  # None: the alias was removed
    Column("message", Text),
)
Index("ix_alias_events_model_alias", alias_events.c.model, alias_events.c.alias, alias_events.c.id)

alias_rules = Table(
    "alias_rules",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("requires", String(128), nullable=False),  # comma-separated: validated, signed
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # max + 1 in the writer's transaction: a race is a PK clash, retried
    Column("time", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(300), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
