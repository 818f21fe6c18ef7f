"""Parcel lockers: couriers and their sites, locker banks and compartments, parcels, notifications.

``commands`` gains ``parcel_id`` (parcel commands target a bank and name the parcel).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_SIZES = "size IN ('mini', 'S', 'M', 'L')"
_STATES = (
    "state IN ('requested', 'empty', 'waiting', 'picked_up', 'retrieved', 'cancelled', 'failed')"
)


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites")


def upgrade() -> None:
    """Create the parcel tables; add ``commands.parcel_id``."""
    op.create_table(
        "couriers",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("company", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_couriers_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_couriers"),
    )
    op.create_table(
        "courier_sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        _site_fk("courier_sites"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_courier_sites_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_courier_sites"),
        sa.UniqueConstraint("account_id", "site_id", name="uq_courier_sites_account_id_site_id"),
    )
    op.create_index("ix_courier_sites_site_id", "courier_sites", ["site_id"])
    op.create_table(
        "locker_banks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=True),
        _site_fk("locker_banks"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_locker_banks_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.id"], name="fk_locker_banks_building_id_buildings"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_locker_banks"),
        sa.UniqueConstraint("gateway_id", "local_id", name="uq_locker_banks_gateway_id_local_id"),
    )
    op.create_index("ix_locker_banks_site_id", "locker_banks", ["site_id"])
    op.create_table(
        "compartments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("no", sa.Integer(), nullable=False),
        sa.Column("size", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("changed_at", sa.BigInteger(), nullable=True),
        _site_fk("compartments"),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["locker_banks.id"], name="fk_compartments_bank_id_locker_banks"
        ),
        sa.CheckConstraint(_SIZES, name="ck_compartments_size"),
        sa.PrimaryKeyConstraint("id", name="pk_compartments"),
        sa.UniqueConstraint("bank_id", "no", name="uq_compartments_bank_id_no"),
    )
    op.create_index("ix_compartments_site_id", "compartments", ["site_id"])
    op.create_table(
        "parcels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("compartment", sa.Integer(), nullable=True),
        sa.Column("size", sa.String(length=8), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_label", sa.String(length=40), nullable=False),
        sa.Column("courier_account_id", sa.Integer(), nullable=True),
        sa.Column("company", sa.String(length=64), nullable=True),
        sa.Column("tracking", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("code_n", sa.Integer(), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=True),
        sa.Column("fee_cents", sa.Integer(), nullable=True),
        sa.Column("fee_state", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("deposited_at", sa.BigInteger(), nullable=True),
        sa.Column("picked_up_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        _site_fk("parcels"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_parcels_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["locker_banks.id"], name="fk_parcels_bank_id_locker_banks"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_parcels_unit_id_units"),
        sa.ForeignKeyConstraint(
            ["courier_account_id"],
            ["accounts.id"],
            name="fk_parcels_courier_account_id_accounts",
        ),
        sa.CheckConstraint(_STATES, name="ck_parcels_state"),
        sa.CheckConstraint(_SIZES, name="ck_parcels_size"),
        sa.PrimaryKeyConstraint("id", name="pk_parcels"),
    )
    op.create_index("ix_parcels_bank_id", "parcels", ["bank_id"])
    op.create_index("ix_parcels_courier_account_id", "parcels", ["courier_account_id"])
    op.create_index("ix_parcels_site_unit", "parcels", ["site_id", "unit_id"])
    op.create_table(
        "notifications",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("read_at", sa.BigInteger(), nullable=True),
        _site_fk("notifications"),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name="fk_notifications_resident_id_residents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_resident", "notifications", ["resident_id", "id"])
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("parcel_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key("fk_commands_parcel_id_parcels", "parcels", ["parcel_id"], ["id"])
        batch.create_index("ix_commands_parcel_id", ["parcel_id"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added (parcel commands go with their parcels)."""
    op.execute("DELETE FROM commands WHERE parcel_id IS NOT NULL")
    with op.batch_alter_table("commands") as batch:
        batch.drop_index("ix_commands_parcel_id")
        batch.drop_constraint("fk_commands_parcel_id_parcels", type_="foreignkey")
        batch.drop_column("parcel_id")
    for table in (
        "notifications",
        "parcels",
        "compartments",
        "locker_banks",
        "courier_sites",
        "couriers",
    ):
        op.drop_table(table)
