"""The gateway's settings as typed models.

Plain pydantic models: loading TOML files and ``COURTYARD_*`` variables into them is the
composition root's job (``courtyard/config.py``), so the gateway never reads the environment itself.
Every model is frozen and refuses unknown keys, so a typo in a configuration file is an error
rather than a silently ignored setting. No secret has a default: broker passwords come from the
operator, command-verifying keys are named by path.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from devices.door import (
    DEFAULT_PREFIX,
    MAX_PULSE_MS,
    MAX_RELAY,
    MIN_PULSE_MS,
    MIN_RELAY,
    DoorTopics,
    is_valid_id,
)

__all__ = [
    "BrokerSettings",
    "BusSettings",
    "CompartmentSettings",
    "CompartmentSize",
    "DoorSettings",
    "GatewaySettings",
    "HttpSettings",
    "LockBoardSettings",
    "LockerBankSettings",
    "MeterKind",
    "MeterSettings",
    "ParcelRules",
    "SiteBrokerSettings",
    "UplinkSettings",
]

# The sync protocol's identifier rule (gateway ids and command targets must satisfy it).
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Model):
    """Where an MQTT broker listens and how to log in."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None


class SiteBrokerSettings(BrokerSettings):
    """The site broker, where door controllers live under ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    @field_validator("prefix")
    @classmethod
    def _prefix_is_topic_safe(cls, value: str) -> str:
        DoorTopics(value, "probe")  # raises DoorProfileError (a ValueError) for a bad prefix
        return value


class DoorSettings(_Model):
    """One door: its id (the target of signed commands) and the controller that drives it."""

    id: str
    device: str
    relay: Annotated[int, Field(ge=MIN_RELAY, le=MAX_RELAY)] = 1
    pulse_ms: Annotated[int, Field(ge=MIN_PULSE_MS, le=MAX_PULSE_MS)] = 3000
    ack_timeout_ms: Annotated[int, Field(ge=50, le=30_000)] = 2000
    open_grace_ms: Annotated[int, Field(ge=0, le=30_000)] = 500
    failure_policy: Literal["fail_secure", "fail_safe"] = "fail_secure"

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a door id is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @field_validator("device")
    @classmethod
    def _device_is_identifier(cls, value: str) -> str:
        if not is_valid_id(value):
            raise ValueError("a device name is 1..64 characters of [A-Za-z0-9_.:-]")
        return value


class HttpSettings(_Model):
    """The local health and metrics endpoint (loopback by default; port 0 picks a free port)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0


class UplinkSettings(_Model):
    """How events travel to the cloud: batch size, how many batches in flight, retry timing."""

    batch_events: Annotated[int, Field(ge=1, le=1000)] = 500
    window: Annotated[int, Field(ge=1, le=64)] = 8
    ack_timeout_ms: Annotated[int, Field(ge=10, le=600_000)] = 2000
    max_backoff_ms: Annotated[int, Field(ge=10, le=3_600_000)] = 30_000


class BusSettings(_Model):
    """One RS-485 line: where it is (a ``serial_for_url`` URL) and its line settings.

    ``url`` is anything pyserial opens: ``/dev/ttyUSB0`` (better a udev name such as
    ``/dev/rs485-meters-a``), ``socket://10.0.0.5:4001`` for an RS-485-to-Ethernet server, or
    ``loop://``. The port is opened once with these settings and never reconfigured (a pty refuses
    a second termios call). ``timeout_ms`` is how long a device may take to finish its reply after
    the request left the wire, and must exceed the slowest device's response delay (DL/T 645 allows
    500 ms) or its late reply collides with the next request. ``gap_ms`` is the idle time the
    owner keeps between the last byte on the line and its next request; ``None`` takes the rule
    of the protocols on the bus (Modbus RTU: 3.5 character times). ``offline_after`` consecutive
    failed exchanges mark a device offline.
    """

    name: str
    url: str
    baud: Annotated[int, Field(ge=300, le=921_600)] = 2400
    parity: Literal["N", "E", "O"] = "E"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout_ms: Annotated[int, Field(ge=10, le=10_000)] = 1000
    gap_ms: Annotated[float, Field(ge=0, le=1000)] | None = None
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    offline_after: Annotated[int, Field(ge=1, le=100)] = 3

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a bus name is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @property
    def char_bits(self) -> int:
        """Bits one character takes on the line: start, data, parity, stop."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits


_METER_VALUES = frozenset(
    {
        "energy_kwh",
        "voltage_v",
        "current_a",
        "power_kw",
        "relay",
        "balance_yuan",
        "volume_m3",
        "flow_m3h",
        "valve",
    }
)

MeterKind = Literal["electricity", "water", "gas", "heat"]
"""What a meter measures, as the cloud files it (a unit's electricity, water, gas or heat)."""

# At most this many devices share one bus: the Modbus unit-id space, and what one RS-485 segment
# with repeaters carries in practice. It also bounds a bus's ``device.health`` report.
MAX_DEVICES_PER_BUS = 247

# Modbus RTU unit ids a meter may have (0 is broadcast, 248..255 reserved), written plainly.
_MODBUS_UNIT = re.compile(r"[1-9][0-9]{0,2}")


class MeterSettings(_Model):
    """One meter on a bus: its protocol, its address, how often to read it and what.

    ``address`` is what the nameplate says: 12 digits for DL/T 645 (``001500076004``; the driver
    sends it low byte first), the unit id for Modbus (``1``..``247``, no leading zero), 14 digits
    for CJ/T 188. A Modbus meter also names its register map (``model``); a CJ/T 188 meter may say
    its type (``meter_type``, cold water by default) and the byte order its firmware expects for
    data identifiers (``di_order``, the standard's high byte first by default).
    ``interval_s`` 0 reads the meter again as soon as its last read finished (a continuous cycle).
    """

    id: str
    bus: str
    protocol: Literal["dlt645", "modbus", "cjt188"] = "dlt645"
    address: str
    interval_s: Annotated[float, Field(ge=0, le=86_400)] = 900
    values: tuple[str, ...] = ("energy_kwh",)
    model: Literal["sdm120", "sdm630", "water"] | None = None
    """Modbus only, and required there: the register map."""
    meter_type: (
        Literal["cold_water", "hot_water", "drinking_water", "reclaimed_water", "gas"] | None
    ) = None
    """CJ/T 188 only: the ``T`` byte (``cold_water`` when unset)."""
    di_order: Literal["high_first", "low_first"] | None = None
    """CJ/T 188 only: data identifier byte order on the wire (``high_first`` when unset)."""
    timeout_ms: Annotated[int, Field(ge=10, le=10_000)] | None = None
    """Overrides the bus's reply timeout for this meter."""
    kind: MeterKind | None = None
    """What the meter measures; derived from the protocol settings when unset."""

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a meter id is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @property
    def derived_kind(self) -> MeterKind:
        """The kind the protocol settings imply: DL/T 645 and the Eastron maps measure
        electricity, the Modbus ``water`` map water; CJ/T 188 water, or gas for ``meter_type``
        ``gas``."""
        if self.protocol == "modbus":
            return "water" if self.model == "water" else "electricity"
        if self.protocol == "cjt188":
            return "gas" if self.meter_type == "gas" else "water"
        return "electricity"

    @property
    def effective_kind(self) -> MeterKind:
        """The kind reported to the cloud: ``kind`` when set, else :attr:`derived_kind`."""
        return self.kind if self.kind is not None else self.derived_kind

    @field_validator("values")
    @classmethod
    def _values_are_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - _METER_VALUES)
        if unknown or not value:
            raise ValueError(f"values must be some of {sorted(_METER_VALUES)}; not {unknown}")
        return value

    @model_validator(mode="after")
    def _options_fit_the_protocol(self) -> MeterSettings:
        if self.protocol == "modbus":
            if not _MODBUS_UNIT.fullmatch(self.address) or int(self.address) > 247:
                raise ValueError("a Modbus meter's address is its unit id, 1..247")
            if self.model is None:
                raise ValueError("a Modbus meter needs model: sdm120, sdm630 or water")
        elif self.model is not None:
            raise ValueError("model (a register map) is for Modbus meters only")
        if self.protocol == "cjt188":
            if not (len(self.address) == 14 and self.address.isascii() and self.address.isdigit()):
                raise ValueError("a CJ/T 188 meter's address is 14 digits")
        elif self.meter_type is not None or self.di_order is not None:
            raise ValueError("meter_type and di_order are for CJ/T 188 meters only")
        if self.kind is not None and self.kind != self.derived_kind:
            raise ValueError(
                f"kind {self.kind!r} contradicts the meter's protocol settings,"
                f" which measure {self.derived_kind}"
            )
        return self


class LockBoardSettings(_Model):
    """One lock control board (Kerong KR-CU16 style) on a bus, at DIP-switch address ``board``."""

    id: str
    bus: str
    board: Annotated[int, Field(ge=0, le=15)]
    locks: Annotated[int, Field(ge=1, le=16)] = 16

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a lock board id is 1..64 characters of [A-Za-z0-9_.:-]")
        return value


CompartmentSize = Literal["mini", "S", "M", "L"]
"""A locker compartment's size, smallest first."""


class CompartmentSettings(_Model):
    """One compartment of a locker bank: lock ``lock`` of lock board ``board`` (docs/parcels.md).

    ``no`` is the number printed on the door, unique within its bank.
    """

    no: Annotated[int, Field(ge=1, le=255)]
    board: str
    lock: Annotated[int, Field(ge=1, le=16)]
    size: CompartmentSize


class LockerBankSettings(_Model):
    """A locker bank: compartments on lock boards, and the terminal (keypad + camera) in front.

    ``id`` is the target of parcel commands; ``terminal`` names the bank's terminal device on the
    site broker, if it has one.
    """

    id: str
    name: Annotated[str, Field(min_length=1, max_length=64)]
    terminal: str | None = None
    compartments: Annotated[tuple[CompartmentSettings, ...], Field(min_length=1, max_length=255)]

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a locker bank id is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @field_validator("terminal")
    @classmethod
    def _terminal_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_id(value):
            raise ValueError("a terminal device name is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @field_validator("compartments")
    @classmethod
    def _numbers_are_unique(
        cls, value: tuple[CompartmentSettings, ...]
    ) -> tuple[CompartmentSettings, ...]:
        numbers = [c.no for c in value]
        if len(set(numbers)) != len(numbers):
            raise ValueError("compartment numbers must be unique within a bank")
        return value


class ParcelRules(_Model):
    """The site's parcel rules: pickup codes, fees, retention, time-outs, keypad lockout.

    ``code_key_file`` is the gateway's 32-byte site code key (mode 0600, written at provisioning);
    it is required as soon as a locker bank is configured.
    """

    code_key_file: Path | None = None
    code_digits: Annotated[int, Field(ge=6, le=8)] = 8
    free_h: Annotated[int, Field(ge=0, le=8760)] = 12
    fee_period_h: Annotated[int, Field(ge=1, le=8760)] = 12
    fee_per_period_cents: Annotated[int, Field(ge=0, le=1_000_000)] = 50
    fee_cap_cents: Annotated[int, Field(ge=0, le=100_000_000)] = 300
    retention_h: Annotated[int, Field(ge=1, le=8760)] = 72
    deposit_timeout_s: Annotated[int, Field(ge=10, le=86_400)] = 300
    left_open_s: Annotated[int, Field(ge=5, le=86_400)] = 120
    code_lockout_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    code_lockout_window_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    code_lockout_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    code_lockout_max_s: Annotated[int, Field(ge=1, le=7 * 86_400)] = 14_400
    watch_interval_s: Annotated[float, Field(ge=0.01, le=60)] = 1.0

    @model_validator(mode="after")
    def _lockout_grows_to_its_maximum(self) -> ParcelRules:
        if self.code_lockout_max_s < self.code_lockout_s:
            raise ValueError("code_lockout_max_s must not be below code_lockout_s")
        return self


class GatewaySettings(_Model):
    """Everything one gateway needs to run.

    Nested defaults are shared instances, which is safe because every model is frozen.
    """

    id: str
    data_dir: Path
    cloud: BrokerSettings = BrokerSettings()
    site: SiteBrokerSettings = SiteBrokerSettings()
    cloud_keys: list[Path] = Field(default_factory=list)
    doors: list[DoorSettings] = Field(default_factory=list)
    http: HttpSettings = HttpSettings()
    uplink: UplinkSettings = UplinkSettings()
    topic_root: str = "cy"
    buses: list[BusSettings] = Field(default_factory=list)
    meters: list[MeterSettings] = Field(default_factory=list)
    lockboards: list[LockBoardSettings] = Field(default_factory=list)
    lockers: tuple[LockerBankSettings, ...] = ()
    """Parcel locker banks (docs/parcels.md); their compartments sit on ``lockboards``."""
    parcels: ParcelRules = ParcelRules()
    health_interval_s: Annotated[float, Field(ge=5, le=86_400)] = 300
    """How often each bus reports its devices' statistics (``device.health``); the first report
    comes after ``min(health_interval_s, 60)`` seconds. 0 ("off") is refused: regular reports are
    how the cloud keeps device statistics current."""

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("a gateway id is 1..64 characters of [A-Za-z0-9_.:-]")
        return value

    @field_validator("topic_root")
    @classmethod
    def _root_is_one_level(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError("topic_root is a single topic level without wildcards")
        return value

    @model_validator(mode="after")
    def _doors_are_unique(self) -> GatewaySettings:
        ids = [d.id for d in self.doors]
        if len(set(ids)) != len(ids):
            raise ValueError("door ids must be unique")
        # A controller's events name no relay, so two doors on one controller would be ambiguous.
        devices = [d.device for d in self.doors]
        if len(set(devices)) != len(devices):
            raise ValueError("each door needs its own controller device")
        return self

    @model_validator(mode="after")
    def _bus_inventory_is_consistent(self) -> GatewaySettings:
        buses = [b.name for b in self.buses]
        if len(set(buses)) != len(buses):
            raise ValueError("bus names must be unique")
        urls = [b.url for b in self.buses]
        if len(set(urls)) != len(urls):
            raise ValueError("two buses cannot share a port: one owner per bus")
        ids = [m.id for m in self.meters] + [b.id for b in self.lockboards]
        if len(set(ids)) != len(ids):
            raise ValueError("meter and lock board ids must be unique")
        placed = [(m.id, m.bus) for m in self.meters] + [(b.id, b.bus) for b in self.lockboards]
        for device, bus in placed:
            if bus not in buses:
                raise ValueError(f"{device} is on bus {bus!r}, which is not configured")
        per_bus = Counter(bus for _, bus in placed)
        crowded = sorted(bus for bus, n in per_bus.items() if n > MAX_DEVICES_PER_BUS)
        if crowded:
            raise ValueError(
                f"bus {crowded[0]!r} has more than {MAX_DEVICES_PER_BUS} devices; split the line"
            )
        # Two devices answering the same address on one line would collide on every request.
        addresses: list[tuple[str, str, str]] = [
            (m.bus, m.protocol, m.address) for m in self.meters
        ]
        addresses += [(b.bus, "lockboard", str(b.board)) for b in self.lockboards]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two devices of one protocol share an address on one bus")
        return self

    @model_validator(mode="after")
    def _lockers_are_consistent(self) -> GatewaySettings:
        banks = [bank.id for bank in self.lockers]
        if len(set(banks)) != len(banks):
            raise ValueError("locker bank ids must be unique")
        boards = {board.id: board for board in self.lockboards}
        wired: set[tuple[str, int]] = set()
        for bank in self.lockers:
            for c in bank.compartments:
                board = boards.get(c.board)
                if board is None:
                    raise ValueError(
                        f"locker {bank.id} compartment {c.no}: lock board {c.board!r}"
                        " is not configured"
                    )
                if c.lock > board.locks:
                    raise ValueError(
                        f"locker {bank.id} compartment {c.no}: board {c.board!r} has"
                        f" {board.locks} locks, not {c.lock}"
                    )
                if (c.board, c.lock) in wired:
                    raise ValueError(f"lock {c.lock} of board {c.board!r} is used twice")
                wired.add((c.board, c.lock))
        if self.lockers and self.parcels.code_key_file is None:
            raise ValueError("parcels.code_key_file is required when lockers are configured")
        return self

    def locker_bank(self, bank_id: str) -> LockerBankSettings | None:
        """The locker bank with ``bank_id``, if configured."""
        return next((b for b in self.lockers if b.id == bank_id), None)

    def bus(self, name: str) -> BusSettings | None:
        """The bus called ``name``, if configured."""
        return next((b for b in self.buses if b.name == name), None)

    def door(self, door_id: str) -> DoorSettings | None:
        """The door with ``door_id``, if configured."""
        return next((d for d in self.doors if d.id == door_id), None)
