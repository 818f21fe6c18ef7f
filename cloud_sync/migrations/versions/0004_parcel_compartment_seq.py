"""Parcels remember which gateway event put them in their compartment.

``parcels.compartment_seq``: the gateway sequence number of the event (``parcel.opened`` or
``parcel.deposit_empty``) that last set ``compartment`` while the deposit was under way, so an
older event applied later (batches of one gateway may be handled out of order) never replaces a
newer compartment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``parcels.compartment_seq``."""
    with op.batch_alter_table("parcels") as batch:
        batch.add_column(sa.Column("compartment_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    with op.batch_alter_table("parcels") as batch:
        batch.drop_column("compartment_seq")
