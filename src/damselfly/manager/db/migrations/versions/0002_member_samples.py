"""member samples: the counters members send with their keepalives (rollout figures)

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
    op.create_table(
        "member_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("member_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_samples_member_id"), ["member_id"])
        batch_op.create_index(batch_op.f("ix_member_samples_at"), ["at"])


def downgrade() -> None:
    with op.batch_alter_table("member_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_samples_at"))
        batch_op.drop_index(batch_op.f("ix_member_samples_member_id"))
    op.drop_table("member_samples")
