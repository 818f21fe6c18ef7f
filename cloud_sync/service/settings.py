"""Typed settings of the cloud service.

The composition root (``courtyard cloud run``) loads TOML and ``COURTYARD_*`` environment variables
into :class:`CloudSettings`; this package only consumes the validated model, so no code here reads
files or the environment. No field holds a secret by default: keys live in files under
``key_dir`` (created at first start with mode 0600), the broker password comes from configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud_sync.protocol import MAX_LIFETIME_MS

__all__ = ["BrokerSettings", "CloudSettings"]


class BrokerSettings(BaseModel):
    """Where the MQTT broker (or cluster) is and how to log in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: str | None = None
    #: Must be unique per service instance; None derives one from the host name and process id.
    client_id: str | None = None


class CloudSettings(BaseModel):
    """Everything the cloud service needs to start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str
    key_dir: Path
    broker: BrokerSettings = BrokerSettings()
    topic_root: str = Field(default="cy", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    #: MQTT v5 shared-subscription group for ingest when several instances run; None = one instance.
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    #: Run the database migrations at start-up (the CLI runs ``courtyard db upgrade`` instead).
    migrate_on_start: bool = False

    token_ttl_s: int = Field(default=86_400, ge=60, le=30 * 86_400)
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    #: Per client address; higher than per login because many households share one NAT address.
    login_max_failures_per_ip: int = Field(default=20, ge=1, le=100_000)
    login_window_s: int = Field(default=300, ge=1, le=86_400)
    argon2: Literal["default", "fast"] = "default"

    command_ttl_ms: int = Field(default=30_000, ge=1_000, le=MAX_LIFETIME_MS)
    #: How long a PUBACK for a command may take before the request answers "queued".
    publish_timeout_ms: int = Field(default=2_000, ge=10, le=MAX_LIFETIME_MS)
    #: Queued/sent commands expire this long after their signed expiry (clock skew, in-flight).
    expiry_grace_ms: int = Field(default=2_000, ge=0, le=60_000)
    #: An acknowledged command with no door outcome this long after its expiry has failed.
    outcome_timeout_ms: int = Field(default=60_000, ge=1_000, le=3_600_000)
    sweep_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Longest ``?wait=`` a client may ask for on ``GET /api/v1/commands/{id}``.
    max_wait_s: float = Field(default=25.0, gt=0, le=25.0)
    #: Where ``courtyard cloud run`` listens (behind a TLS-terminating proxy in production).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Largest request body accepted; bodies here are a few hundred bytes.
    client_max_size: int = Field(default=64 * 1024, ge=1024, le=1 << 20)
