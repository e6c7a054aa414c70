"""escrow answers sealed off the request path; known addresses; recovery blocks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 11:00:00

* ``account_emails``: every verified address seen for an account (filled from the
  accounts' current verified addresses here), so recovery notices reach old addresses too.
* ``accounts.recovery_blocked_until``: no recovery starts before it (after an e-mail
  change or a password reset).
* ``recoveries``: the answer sealed by ``hushchat-sync escrow process`` (``ready``), who
  approved it, the hash of the mailed cancel link and why it was cancelled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "account_emails",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_emails_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "email", name=op.f("pk_account_emails")),
    )
    op.execute(
        "INSERT INTO account_emails (account_id, email, first_seen_at) "
        "SELECT id, email, created_at FROM accounts "
        "WHERE email_verified AND email IS NOT NULL AND email <> ''"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("recovery_blocked_until", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("recoveries") as batch:
        batch.add_column(sa.Column("approved_by_device", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sealed_answer", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("answer_key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cancel_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.String(length=32), nullable=True))
        batch.create_index("ix_recoveries_cancel_token_hash", ["cancel_token_hash"], unique=True)


def downgrade() -> None:
    """Revert this revision (ready answers are dropped; their recoveries are cancelled)."""
    op.execute("UPDATE recoveries SET status = 'cancelled' WHERE status IN ('ready', 'expired')")
    with op.batch_alter_table("recoveries") as batch:
        batch.drop_index("ix_recoveries_cancel_token_hash")
        for column in (
            "cancel_reason",
            "cancel_token_hash",
            "answer_key_id",
            "sealed_answer",
            "ready_at",
            "approved_by_device",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("recovery_blocked_until")
    op.drop_table("account_emails")
