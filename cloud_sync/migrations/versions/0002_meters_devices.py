"""Meters, their readings as per-meter series, field-device health; commands for any target.

``commands`` gains ``target`` (the local id the signed command names; existing rows take their
door's) and ``meter_id``; ``door_id`` becomes optional, since a command may read a meter.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_METER_KINDS = "kind IN ('electricity', 'water', 'gas', 'heat')"
_DEVICE_KINDS = "kind IN ('meter', 'lockboard', 'door', 'terminal')"


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites")


def _gateway_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["gateway_id"], ["gateways.id"], name=f"fk_{table}_gateway_id_gateways"
    )


def upgrade() -> None:
    """Create the meter and device tables; widen commands."""
    op.create_table(
        "meters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        _site_fk("meters"),
        _gateway_fk("meters"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_meters_unit_id_units"),
        sa.CheckConstraint(_METER_KINDS, name="ck_meters_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_meters"),
        sa.UniqueConstraint("gateway_id", "local_id", name="uq_meters_gateway_id_local_id"),
    )
    op.create_index("ix_meters_site_id", "meters", ["site_id"])
    op.create_index("ix_meters_unit_id", "meters", ["unit_id"])
    op.create_table(
        "meter_readings",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.Integer(), nullable=False),
        sa.Column("read_at", sa.BigInteger(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        _site_fk("meter_readings"),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name="fk_meter_readings_meter_id_meters"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_meter_readings"),
        sa.UniqueConstraint("meter_id", "read_at", name="uq_meter_readings_meter_id_read_at"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bus", sa.String(length=64), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("changed_at", sa.BigInteger(), nullable=True),
        sa.Column("last_seen", sa.BigInteger(), nullable=True),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("timeouts", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("checksum_errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("stats_at", sa.BigInteger(), nullable=True),
        _site_fk("devices"),
        _gateway_fk("devices"),
        sa.CheckConstraint(_DEVICE_KINDS, name="ck_devices_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("gateway_id", "local_id", name="uq_devices_gateway_id_local_id"),
    )
    op.create_index("ix_devices_site_id", "devices", ["site_id"])

    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("target", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("meter_id", sa.Integer(), nullable=True))
        batch.alter_column("door_id", existing_type=sa.Integer(), nullable=True)
        batch.create_foreign_key("fk_commands_meter_id_meters", "meters", ["meter_id"], ["id"])
        batch.create_index("ix_commands_meter_id", ["meter_id"])
    op.execute(
        "UPDATE commands SET target = (SELECT doors.local_id FROM doors"
        " WHERE doors.id = commands.door_id)"
    )
    with op.batch_alter_table("commands") as batch:
        batch.alter_column("target", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    """Drop what :func:`upgrade` added (meter commands are dropped with their meters)."""
    op.execute("DELETE FROM commands WHERE door_id IS NULL")
    with op.batch_alter_table("commands") as batch:
        batch.drop_index("ix_commands_meter_id")
        batch.drop_constraint("fk_commands_meter_id_meters", type_="foreignkey")
        batch.drop_column("meter_id")
        batch.drop_column("target")
        batch.alter_column("door_id", existing_type=sa.Integer(), nullable=False)
    for table in ("devices", "meter_readings", "meters"):
        op.drop_table(table)
