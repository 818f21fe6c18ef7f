"""MQTT topics of the gateway⇄cloud link, one subtree per gateway so broker ACLs can confine each.

{root}/gw/{gateway}/up/events     gateway → cloud   event batches (QoS 1)
{root}/gw/{gateway}/up/status     gateway → cloud   retained online/offline (last will)
{root}/gw/{gateway}/down/ack      cloud → gateway   application-level acks (QoS 1)
{root}/gw/{gateway}/down/cmd      cloud → gateway   signed commands (QoS 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud_sync.protocol.errors import SyncProtocolError
from cloud_sync.protocol.wire import ID_PATTERN

__all__ = ["DEFAULT_ROOT", "GatewayTopics", "cloud_subscriptions", "gateway_of"]

DEFAULT_ROOT = "cy"


@dataclass(frozen=True, slots=True)
class GatewayTopics:
    """The topics of one gateway."""

    gateway: str
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not ID_PATTERN.fullmatch(self.gateway) or "/" in self.root or not self.root:
            raise ValueError("gateway id must be an identifier and root a single topic level")

    @property
    def base(self) -> str:
        """The gateway's subtree."""
        return f"{self.root}/gw/{self.gateway}"

    @property
    def up_events(self) -> str:
        """Event batches, gateway to cloud."""
        return f"{self.base}/up/events"

    @property
    def up_status(self) -> str:
        """Retained online/offline status of the gateway."""
        return f"{self.base}/up/status"

    @property
    def down_ack(self) -> str:
        """Application-level acks, cloud to gateway."""
        return f"{self.base}/down/ack"

    @property
    def down_cmd(self) -> str:
        """Signed commands, cloud to gateway."""
        return f"{self.base}/down/cmd"


def cloud_subscriptions(root: str = DEFAULT_ROOT, share_group: str | None = None) -> list[str]:
    """What a cloud ingest instance subscribes to (a shared subscription when scaled out)."""
    filters = [f"{root}/gw/+/up/events", f"{root}/gw/+/up/status"]
    if share_group:
        return [f"$share/{share_group}/{f}" for f in filters]
    return filters


def gateway_of(topic: str, root: str = DEFAULT_ROOT) -> tuple[str, str]:
    """Split ``{root}/gw/{gateway}/{up|down}/{kind}`` into (gateway, "up/kind")."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != root or parts[1] != "gw" or parts[3] not in ("up", "down"):
        raise SyncProtocolError(f"not a gateway topic: {topic!r}")
    if not ID_PATTERN.fullmatch(parts[2]):
        raise SyncProtocolError("bad gateway id in topic")
    return parts[2], f"{parts[3]}/{parts[4]}"
