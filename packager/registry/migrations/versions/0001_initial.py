"""The first catalog schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("quantization", sa.String(32)),
        sa.Column("validation", sa.String(48)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("lineage", sa.Text, nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
    )
    op.create_index("ix_versions_digest", "versions", ["digest"])
    op.create_table(
        "files",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_files_digest", "files", ["digest"])
    op.create_table(
        "params",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_key_value", "metrics", ["key", "value"])
    op.create_table(
        "tags",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_tags_key", "tags", ["key"])
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_table(
        "edges",
        sa.Column("child_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("parent_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("relation", sa.String(32), primary_key=True),
    )
    op.create_index("ix_edges_parent", "edges", ["parent_id"])
    op.create_table(
        "data_refs",
        sa.Column("version_id", sa.String(36), sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("uri", sa.String(1024), primary_key=True),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.BigInteger),
        sa.Column("rows", sa.BigInteger),
    )


def downgrade() -> None:
    for table in ("data_refs", "edges", "aliases", "tags", "metrics", "params", "files", "versions", "models"):
        op.drop_table(table)
