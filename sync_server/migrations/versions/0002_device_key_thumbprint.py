"""devices.jkt: the thumbprint of the device's DPoP key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:00:00

Devices registered before DPoP have no thumbprint (NULL); a device id is now the
thumbprint itself, so such rows are bound on their first request with a proof.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("devices", sa.Column("jkt", sa.String(length=64), nullable=True))
    op.create_index("ix_devices_account_jkt", "devices", ["account_id", "jkt"], unique=True)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_devices_account_jkt", table_name="devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("jkt")
