"""the (account_id, seq) index of records is partial (seq > 0)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 20:30:00

A push asks "which ids of this batch exist" with one primary-key probe per id
(``records.account_id = :a AND records.record_id = :id``). On a table PostgreSQL has not
analyzed yet — a new server's first minute, a new user's first large upload — the planner
costed ``ix_records_account_seq`` (``account_id`` only, ``record_id`` as a filter) the same
as the primary key and chose it: every probe then read the whole account, 45 ms a batch
of 100 at 1,500 stored records and growing with each batch. As a partial index
(``WHERE seq > 0``; every stored seq is ≥ 1) it can only serve a query whose WHERE says
``seq > 0``: the pull does (``sync_server.records._CHANGES``), the probe does not, so the
primary key is the only index the probe can use, whatever the statistics.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PARTIAL = sa.text("seq > 0")


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records") as batch:
        batch.drop_index("ix_records_account_seq")
        batch.create_index(
            "ix_records_account_seq",
            ["account_id", "seq"],
            unique=True,
            postgresql_where=_PARTIAL,
            sqlite_where=_PARTIAL,
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("records") as batch:
        batch.drop_index("ix_records_account_seq")
        batch.create_index("ix_records_account_seq", ["account_id", "seq"], unique=True)
