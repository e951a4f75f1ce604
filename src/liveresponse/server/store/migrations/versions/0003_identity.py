"""identity and governance: custom roles, group-limited assignments, sign-in lockout, device type by token or group

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roles",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("group_ids", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failed_sign_ins", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("first_failed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("locked_until", sa.Float(), nullable=True))
    with op.batch_alter_table("device_groups") as batch:
        batch.add_column(sa.Column("device_type", sa.String(length=20), nullable=True))
    with op.batch_alter_table("enroll_tokens") as batch:
        batch.add_column(sa.Column("device_type", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enroll_tokens") as batch:
        batch.drop_column("device_type")
    with op.batch_alter_table("device_groups") as batch:
        batch.drop_column("device_type")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked_until")
        batch.drop_column("first_failed_at")
        batch.drop_column("failed_sign_ins")
        batch.drop_column("group_ids")
    op.drop_table("roles")
