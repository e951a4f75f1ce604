"""audit chain head: the newest record's seq and hash kept beside the chain

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("head", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("head")
