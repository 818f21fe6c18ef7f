"""Initial schema: sites and their people, devices, commands, inbox, alarms, audit chain.

Written out table by table (not ``metadata.create_all``) so that this revision stays what it was
when later revisions change the classes in :mod:`cloud_sync.service.tables`. Constraint names
follow ``tables.NAMING_CONVENTION``.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Mirrors tables.AuditRecord.id: 64-bit on PostgreSQL, SQLite's (64-bit) rowid alias there.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
    )
    op.create_table(
        "buildings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        _site_fk("buildings"),
        sa.PrimaryKeyConstraint("id", name="pk_buildings"),
    )
    op.create_index("ix_buildings_site_id", "buildings", ["site_id"])
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        _site_fk("units"),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.id"], name="fk_units_building_id_buildings"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_units"),
        sa.UniqueConstraint("site_id", "label", name="uq_units_site_id_label"),
    )
    op.create_index("ix_units_site_id", "units", ["site_id"])
    op.create_index("ix_units_building_id", "units", ["building_id"])
    op.create_table(
        "residents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("name_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("phone_index", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("erased_at", sa.BigInteger(), nullable=True),
        _site_fk("residents"),
        sa.PrimaryKeyConstraint("id", name="pk_residents"),
    )
    op.create_index("ix_residents_site_phone", "residents", ["site_id", "phone_index"])
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "relation IN ('owner', 'tenant', 'member')", name="ck_memberships_relation"
        ),
        _site_fk("memberships"),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name="fk_memberships_resident_id_residents"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_memberships_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        sa.UniqueConstraint("resident_id", "unit_id", name="uq_memberships_resident_id_unit_id"),
    )
    op.create_index("ix_memberships_site_id", "memberships", ["site_id"])
    op.create_index("ix_memberships_resident_id", "memberships", ["resident_id"])
    op.create_index("ix_memberships_unit_id", "memberships", ["unit_id"])
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "role IN ('resident', 'engineer', 'admin', 'auditor', 'courier')",
            name="ck_accounts_role",
        ),
        _site_fk("accounts"),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name="fk_accounts_resident_id_residents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("login", name="uq_accounts_login"),
    )
    op.create_index("ix_accounts_site_id", "accounts", ["site_id"])
    op.create_index("ix_accounts_resident_id", "accounts", ["resident_id"])
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        _site_fk("tokens"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_tokens_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_tokens"),
    )
    op.create_index("ix_tokens_site_id", "tokens", ["site_id"])
    op.create_index("ix_tokens_account_id", "tokens", ["account_id"])
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("command_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=True),
        _site_fk("gateways"),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
    )
    op.create_index("ix_gateways_site_id", "gateways", ["site_id"])
    op.create_table(
        "doors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("pulse_ms", sa.Integer(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        _site_fk("doors"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_doors_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.id"], name="fk_doors_building_id_buildings"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_doors"),
        sa.UniqueConstraint("gateway_id", "local_id", name="uq_doors_gateway_id_local_id"),
    )
    op.create_index("ix_doors_site_id", "doors", ["site_id"])
    op.create_index("ix_doors_gateway_id", "doors", ["gateway_id"])
    op.create_index("ix_doors_building_id", "doors", ["building_id"])
    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        _site_fk("commands"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_commands_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(["door_id"], ["doors.id"], name="fk_commands_door_id_doors"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_commands_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_commands"),
        sa.UniqueConstraint(
            "account_id", "idempotency_key", name="uq_commands_account_id_idempotency_key"
        ),
    )
    op.create_index("ix_commands_site_id", "commands", ["site_id"])
    op.create_index("ix_commands_door_id", "commands", ["door_id"])
    op.create_index("ix_commands_account_id", "commands", ["account_id"])
    op.create_index("ix_commands_open", "commands", ["status", "expires_at"])
    op.create_table(
        "gateway_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        _site_fk("gateway_events"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_gateway_events_gateway_id_gateways"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_events"),
        sa.UniqueConstraint("gateway_id", "seq", name="uq_gateway_events_gateway_id_seq"),
    )
    op.create_index("ix_gateway_events_site_id", "gateway_events", ["site_id"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("cleared_at", sa.BigInteger(), nullable=True),
        _site_fk("alarms"),
        sa.PrimaryKeyConstraint("id", name="pk_alarms"),
    )
    op.create_index("ix_alarms_site_id", "alarms", ["site_id"])
    op.create_table(
        "audit_heads",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        _site_fk("audit_heads"),
        sa.PrimaryKeyConstraint("site_id", name="pk_audit_heads"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.LargeBinary(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        _site_fk("audit_log"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint("site_id", "seq", name="uq_audit_log_site_id_seq"),
    )


def downgrade() -> None:
    """Drop every table (and so every index), dependents first."""
    for table in (
        "audit_log",
        "audit_heads",
        "alarms",
        "gateway_events",
        "commands",
        "doors",
        "gateways",
        "tokens",
        "accounts",
        "memberships",
        "residents",
        "units",
        "buildings",
        "sites",
    ):
        op.drop_table(table)
