"""Trust: signatures, trusted keys, alias history and promotion rules, the hash-chained audit log.

Revision ID: 0002
Revises: 0001

Only new tables: every version, alias and tag of a 0001 catalog stays as it is. The aliases that exist
are recorded as the first history entries (actor "migration"), so a rollback has somewhere to start.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signatures",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(40), nullable=False),
        sa.Column("signed_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "trust_keys",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("added", sa.String(40), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
    )
    events = op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_alias_events_model_alias", "alias_events", ["model", "alias", "id"])
    op.create_table(
        "alias_rules",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("requires", sa.String(128), nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    bind = op.get_bind()
    existing = bind.execute(
        sa.text(
            "SELECT m.name, a.alias, v.version FROM aliases a JOIN models m ON m.id = a.model_id "
            "JOIN versions v ON v.id = a.version_id ORDER BY m.name, a.alias"
        )
    ).all()
    if existing:
        import datetime

        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        op.bulk_insert(
            events,
            [
                {
                    "model": n,
                    "alias": a,
                    "time": stamp,
                    "actor": "migration",
                    "from_version": None,
                    "to_version": v,
                    "message": "existing alias",
                }
                for n, a, v in existing
            ],
        )


def downgrade() -> None:
    for table in ("audit", "alias_rules", "alias_events", "trust_keys", "signatures"):
        op.drop_table(table)
