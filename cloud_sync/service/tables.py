"""The cloud's database tables (SQLModel on SQLAlchemy 2).

Every table carries ``site_id`` so the data can shard by site (Citus distributes on that column).
Times are integer milliseconds since the epoch (SQLite drops time zones; integers do not).
Personal data is never stored in the clear: ``*_sealed`` columns hold AES-256-GCM values sealed
under the resident's data key (see :mod:`trust.sealed`), ``phone_index`` is a keyed blind index.
Tables are persistence only: they are never sent over the wire as they are.

The schema is created and changed only by the Alembic migrations in ``cloud_sync/migrations``; a
test checks that the migrated database matches these classes exactly. Constraint names follow
:data:`NAMING_CONVENTION` so that a later migration can name (and, on SQLite, rebuild) them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

__all__ = [
    "DEVICE_KINDS",
    "METER_KINDS",
    "NAMING_CONVENTION",
    "PARCEL_SIZES",
    "PARCEL_STATES",
    "RELATIONS",
    "ROLES",
    "Account",
    "Alarm",
    "AuditHead",
    "AuditRecord",
    "Building",
    "Command",
    "Compartment",
    "Courier",
    "CourierSite",
    "Device",
    "Door",
    "Gateway",
    "GatewayEvent",
    "LockerBank",
    "Membership",
    "Meter",
    "MeterReading",
    "Notification",
    "Parcel",
    "Resident",
    "Site",
    "Token",
    "Unit",
]


# Deterministic constraint names on every engine (PostgreSQL would otherwise invent its own, and
# SQLite would leave them unnamed), so migrations can refer to them. Set before any table exists.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

#: A resident's relationship to a unit.
RELATIONS = ("owner", "tenant", "member")
#: What a meter measures.
METER_KINDS = ("electricity", "water", "gas", "heat")
#: What kind of field device a gateway reports on.
DEVICE_KINDS = ("meter", "lockboard", "door", "terminal")
#: Compartment and parcel sizes.
PARCEL_SIZES = ("mini", "S", "M", "L")
#: A parcel's state as the cloud knows it (see docs/parcels.md).
PARCEL_STATES = (
    "requested",  # the cloud asked the gateway to open a compartment for it
    "empty",  # the door was closed with nothing inside: the courier retries or cancels
    "waiting",  # deposited: waiting for its recipient
    "picked_up",
    "retrieved",  # taken back by the courier after the retention period
    "cancelled",
    "failed",  # the deposit command failed (no free compartment, jammed, refused, expired)
)
#: The roles an account can have.
ROLES = ("resident", "engineer", "admin", "auditor", "courier")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ms(**kw: Any) -> Any:
    return Field(sa_type=BigInteger, **kw)


class Site(SQLModel, table=True):
    """A residential community (小区); its id is the shard key of every other table."""

    __tablename__ = "sites"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    created_at: int = _ms()


class Building(SQLModel, table=True):
    """A building of a site."""

    __tablename__ = "buildings"
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    name: str = Field(max_length=100)


class Unit(SQLModel, table=True):
    """A dwelling, e.g. ``3-201`` (building 3, flat 201)."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("site_id", "label"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    building_id: int = Field(foreign_key="buildings.id", index=True)
    label: str = Field(max_length=40)


class Resident(SQLModel, table=True):
    """A person living at the site. Name and phone are sealed; erasure drops ``wrapped_key``."""

    __tablename__ = "residents"
    # Lookups by phone are always within one site; this index also serves "residents of a site".
    __table_args__ = (Index("ix_residents_site_phone", "site_id", "phone_index"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id")
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    name_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    phone_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    phone_index: str | None = Field(default=None, max_length=64)
    created_at: int = _ms()
    erased_at: int | None = Field(default=None, sa_type=BigInteger)


class Membership(SQLModel, table=True):
    """A resident's relationship to a unit: owner, tenant or household member."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("resident_id", "unit_id"),
        CheckConstraint(_one_of("relation", RELATIONS), name="relation"),
    )
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    resident_id: int = Field(foreign_key="residents.id", index=True)
    unit_id: int = Field(foreign_key="units.id", index=True)
    relation: str = Field(max_length=16)  # owner | tenant | member
    valid_from: int = _ms()
    valid_until: int | None = Field(default=None, sa_type=BigInteger)


class Account(SQLModel, table=True):
    """A login: a resident's, or a staff user's with a role at the site."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    login: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=16)  # resident | engineer | admin | auditor | courier
    resident_id: int | None = Field(default=None, foreign_key="residents.id", index=True)
    disabled: bool = False
    created_at: int = _ms()


class Token(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    token_hash: str = Field(primary_key=True, max_length=64)
    site_id: int = Field(foreign_key="sites.id", index=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    created_at: int = _ms()
    expires_at: int = _ms()


class Gateway(SQLModel, table=True):
    """An on-site gateway and its sync counters."""

    __tablename__ = "gateways"
    id: str = Field(primary_key=True, max_length=64)
    site_id: int = Field(foreign_key="sites.id", index=True)
    name: str = Field(max_length=100)
    command_seq: int = Field(default=0, sa_type=BigInteger)
    last_event_seq: int = Field(default=0, sa_type=BigInteger)
    online: bool = False
    last_seen: int | None = Field(default=None, sa_type=BigInteger)


class Door(SQLModel, table=True):
    """A door a gateway controls; ``local_id`` is the target named in signed commands."""

    __tablename__ = "doors"
    __table_args__ = (UniqueConstraint("gateway_id", "local_id"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", index=True, max_length=64)
    building_id: int = Field(foreign_key="buildings.id", index=True)
    local_id: str = Field(max_length=64)
    name: str = Field(max_length=100)
    pulse_ms: int = 3000
    online: bool | None = None


class Command(SQLModel, table=True):
    """A signed command and where it is in its lifecycle (:mod:`cloud_sync.protocol.lifecycle`)."""

    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key"),
        Index("ix_commands_open", "status", "expires_at"),
    )
    id: str = Field(primary_key=True, max_length=32)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    target: str = Field(max_length=64)
    """What the signed command names as its target on the gateway (a door's or meter's local id)."""
    door_id: int | None = Field(default=None, foreign_key="doors.id", index=True)
    """Set for door commands."""
    meter_id: int | None = Field(default=None, foreign_key="meters.id", index=True)
    """Set for meter commands."""
    parcel_id: str | None = Field(default=None, foreign_key="parcels.id", index=True, max_length=32)
    """Set for parcel commands (their target is the locker bank)."""
    account_id: int = Field(foreign_key="accounts.id", index=True)
    action: str = Field(max_length=32)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    status: str = Field(max_length=24)
    reason: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=128)
    issued_at: int = _ms()
    expires_at: int = _ms()
    updated_at: int = _ms()


class Meter(SQLModel, table=True):
    """A utility meter a gateway reads; ``local_id`` is its id in the gateway's configuration.

    ``unit_id`` is the dwelling it measures (None: common areas, or not yet assigned). A reading
    from a meter the cloud has not been told about registers it unassigned, kind from the event.
    """

    __tablename__ = "meters"
    __table_args__ = (
        UniqueConstraint("gateway_id", "local_id"),
        CheckConstraint(_one_of("kind", METER_KINDS), name="kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    local_id: str = Field(max_length=64)
    unit_id: int | None = Field(default=None, foreign_key="units.id", index=True)
    kind: str = Field(max_length=16)
    name: str = Field(default="", max_length=100)
    created_at: int = _ms()


class MeterReading(SQLModel, table=True):
    """One reading of one meter: its values (decimal strings by quantity) at ``read_at``.

    The series key is ``(meter_id, read_at)``: its unique index serves every range query, and a
    reading delivered twice (under another event id) is still stored once.
    """

    __tablename__ = "meter_readings"
    __table_args__ = (UniqueConstraint("meter_id", "read_at"),)
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer, "sqlite")
    )
    site_id: int = Field(foreign_key="sites.id")
    meter_id: int = Field(foreign_key="meters.id")
    read_at: int = _ms()
    values: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    event_id: str = Field(max_length=32)
    """The gateway event the reading came in."""


class Device(SQLModel, table=True):
    """A field device's health as its gateway last reported it (engineers watch this)."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("gateway_id", "local_id"),
        CheckConstraint(_one_of("kind", DEVICE_KINDS), name="kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    local_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    bus: str | None = Field(default=None, max_length=64)
    online: bool | None = None
    changed_at: int | None = Field(default=None, sa_type=BigInteger)
    """When ``online`` last changed (gateway time of the event)."""
    last_seen: int | None = Field(default=None, sa_type=BigInteger)
    requests: int = Field(default=0, sa_type=BigInteger)
    timeouts: int = Field(default=0, sa_type=BigInteger)
    failures: int = Field(default=0, sa_type=BigInteger)
    checksum_errors: int = Field(default=0, sa_type=BigInteger)
    latency_ms: int | None = None
    """Smoothed reply latency."""
    stats_at: int | None = Field(default=None, sa_type=BigInteger)
    """Gateway time of the statistics above (None: only online/offline reported so far)."""


class Courier(SQLModel, table=True):
    """A courier account's delivery company; the sites it serves are :class:`CourierSite` rows."""

    __tablename__ = "couriers"
    account_id: int = Field(primary_key=True, foreign_key="accounts.id")
    company: str = Field(max_length=64)


class CourierSite(SQLModel, table=True):
    """A site a courier may deposit at (its account's own site is not implied)."""

    __tablename__ = "courier_sites"
    __table_args__ = (UniqueConstraint("account_id", "site_id"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    account_id: int = Field(foreign_key="accounts.id")


class LockerBank(SQLModel, table=True):
    """A bank of parcel lockers; ``local_id`` is its id in the gateway's configuration."""

    __tablename__ = "locker_banks"
    __table_args__ = (UniqueConstraint("gateway_id", "local_id"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    local_id: str = Field(max_length=64)
    name: str = Field(default="", max_length=100)
    building_id: int | None = Field(default=None, foreign_key="buildings.id")


class Compartment(SQLModel, table=True):
    """One compartment of a bank, as its gateway last reported it."""

    __tablename__ = "compartments"
    __table_args__ = (
        UniqueConstraint("bank_id", "no"),
        CheckConstraint(_one_of("size", PARCEL_SIZES), name="size"),
    )
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    bank_id: int = Field(foreign_key="locker_banks.id")
    no: int
    size: str = Field(max_length=8)
    state: str = Field(default="free", max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    changed_at: int | None = Field(default=None, sa_type=BigInteger)


class Parcel(SQLModel, table=True):
    """A parcel in (or on its way into) a compartment. The pickup code is never stored.

    The code is derived from the parcel id and ``code_n`` with the gateway's code key (see
    docs/parcels.md) and recomputed only to show it to the recipient.
    """

    __tablename__ = "parcels"
    __table_args__ = (
        CheckConstraint(_one_of("state", PARCEL_STATES), name="state"),
        CheckConstraint(_one_of("size", PARCEL_SIZES), name="size"),
        Index("ix_parcels_site_unit", "site_id", "unit_id"),
    )
    id: str = Field(primary_key=True, max_length=32)
    site_id: int = Field(foreign_key="sites.id")
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    bank_id: int = Field(foreign_key="locker_banks.id", index=True)
    compartment: int | None = None
    compartment_seq: int | None = Field(default=None, sa_type=BigInteger)
    """The gateway seq of the event that last set ``compartment`` during the deposit
    (``parcel.opened``, ``parcel.deposit_empty``): an older one never replaces it."""
    size: str = Field(max_length=8)
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    """The recipient unit (None: a terminal deposit for a unit label the cloud does not know)."""
    unit_label: str = Field(max_length=40)
    courier_account_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    company: str | None = Field(default=None, max_length=64)
    tracking: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    code_n: int | None = None
    via: str | None = Field(default=None, max_length=16)
    """How it came in (``command``/``terminal``) and, once picked up, how it went out."""
    fee_cents: int | None = None
    fee_state: str | None = Field(default=None, max_length=8)
    created_at: int = _ms()
    deposited_at: int | None = Field(default=None, sa_type=BigInteger)
    picked_up_at: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: int = _ms()


class Notification(SQLModel, table=True):
    """A message to a resident through the in-app channel. Never holds a pickup code."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_resident", "resident_id", "id"),)
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer, "sqlite")
    )
    site_id: int = Field(foreign_key="sites.id")
    resident_id: int = Field(foreign_key="residents.id")
    kind: str = Field(max_length=32)
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: int = _ms()
    read_at: int | None = Field(default=None, sa_type=BigInteger)


class GatewayEvent(SQLModel, table=True):
    """The inbox: every event a gateway sent, once (by id and by per-gateway seq)."""

    __tablename__ = "gateway_events"
    __table_args__ = (UniqueConstraint("gateway_id", "seq"),)
    id: str = Field(primary_key=True, max_length=32)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64)
    seq: int = Field(sa_type=BigInteger)
    ts: int = _ms()
    type: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: int = _ms()


class Alarm(SQLModel, table=True):
    """Something an engineer must look at (sequence gap, forced door, offline device…)."""

    __tablename__ = "alarms"
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    gateway_id: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=48)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: int = _ms()
    cleared_at: int | None = Field(default=None, sa_type=BigInteger)


class AuditHead(SQLModel, table=True):
    """The head of a site's audit chain; locking this row serialises appends per site."""

    __tablename__ = "audit_heads"
    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    seq: int = Field(default=0, sa_type=BigInteger)
    hash: str = Field(default="0" * 64, max_length=64)


class AuditRecord(SQLModel, table=True):
    """One link of a site's hash-chained audit log."""

    __tablename__ = "audit_log"
    # The unique (site_id, seq) index also serves every per-site scan of the chain.
    __table_args__ = (UniqueConstraint("site_id", "seq"),)
    # 64-bit: every door opening at every site appends a row (SQLite's rowid is 64-bit already).
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer, "sqlite")
    )
    site_id: int = Field(foreign_key="sites.id")
    seq: int = Field(sa_type=BigInteger)
    ts: int = _ms()
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    object: str = Field(max_length=128)
    detail: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
