"""The gateway's settings as typed models.

Plain pydantic models: loading TOML files and ``COURTYARD_*`` variables into them is the
composition root's job (``courtyard/config.py``), so the gateway never reads the environment itself.
Every model is frozen and refuses unknown keys, so a typo in a configuration file is an error
rather than a silently ignored setting. No secret has a default: broker passwords come from the
operator, command-verifying keys are named by path.
"""

from __future__ import annotations

import re
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
    "DoorSettings",
    "GatewaySettings",
    "HttpSettings",
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

    def door(self, door_id: str) -> DoorSettings | None:
        """The door with ``door_id``, if configured."""
        return next((d for d in self.doors if d.id == door_id), None)
