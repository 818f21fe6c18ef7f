"""Where terminal-profile messages travel on the site broker.

Each locker terminal has four topics under a configurable prefix (default ``site``)::

    {prefix}/terminal/{device}/event     terminal -> gateway    QoS 1   JSON
    {prefix}/terminal/{device}/frame     terminal -> gateway    QoS 1   JPEG or PNG bytes
    {prefix}/terminal/{device}/display   gateway -> terminal    QoS 1   JSON
    {prefix}/terminal/{device}/state     terminal -> everyone   QoS 1, retained, last will

`TerminalTopics` names one terminal's topics, `subscription` gives the wildcard a gateway
subscribes to for one kind across all terminals, and `parse_topic` maps a received topic back to
``(device, kind)``. Prefix levels and device names follow the door profile's rules
(``[A-Za-z0-9_.:-]``), so a topic can never smuggle in MQTT wildcards (``+``, ``#``) or extra
levels.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from devices.terminal.errors import ErrorReason, TerminalProfileError
from devices.terminal.profile import is_valid_device

__all__ = [
    "DEFAULT_PREFIX",
    "QOS",
    "TerminalTopic",
    "TerminalTopics",
    "TopicKind",
    "gateway_subscriptions",
    "parse_topic",
    "subscription",
]

DEFAULT_PREFIX: Final = "site"
"""The topic prefix used when none is configured."""

QOS: Final = 1
"""The QoS of every terminal topic, both directions."""

_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}(?:/[A-Za-z0-9_.:-]{1,64}){0,7}")


class TopicKind(enum.StrEnum):
    """The last level of a terminal topic: which message flows on it."""

    EVENT = "event"
    FRAME = "frame"
    DISPLAY = "display"
    STATE = "state"


def _check_prefix(prefix: str) -> None:
    if type(prefix) is not str or _PREFIX_PATTERN.fullmatch(prefix) is None:
        raise TerminalProfileError(
            ErrorReason.BAD_TOPIC,
            "a prefix is 1..8 levels of 1..64 characters of [A-Za-z0-9_.:-]",
            field="prefix",
        )


def _check_device(device: str) -> None:
    if not is_valid_device(device):
        raise TerminalProfileError(
            ErrorReason.BAD_TOPIC,
            "a device name is 1..64 characters of [A-Za-z0-9_.:-]",
            field="device",
        )


@dataclass(frozen=True, slots=True)
class TerminalTopics:
    """The four topics of one terminal, e.g. ``TerminalTopics("site", "term-a").event``."""

    prefix: str
    device: str

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)
        _check_device(self.device)

    def topic(self, kind: TopicKind) -> str:
        """Return this terminal's topic for `kind`."""
        return f"{self.prefix}/terminal/{self.device}/{kind.value}"

    @property
    def event(self) -> str:
        """What people do at the terminal (JSON events)."""
        return self.topic(TopicKind.EVENT)

    @property
    def frame(self) -> str:
        """Camera frames (raw JPEG or PNG bytes)."""
        return self.topic(TopicKind.FRAME)

    @property
    def display(self) -> str:
        """What the gateway wants shown (JSON displays)."""
        return self.topic(TopicKind.DISPLAY)

    @property
    def state(self) -> str:
        """The terminal's retained state and last will."""
        return self.topic(TopicKind.STATE)


class TerminalTopic(NamedTuple):
    """A received topic, taken apart."""

    device: str
    kind: TopicKind


def subscription(kind: TopicKind, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the wildcard matching `kind` for every terminal, e.g. ``site/terminal/+/event``."""
    _check_prefix(prefix)
    return f"{prefix}/terminal/+/{kind.value}"


def gateway_subscriptions(prefix: str = DEFAULT_PREFIX) -> tuple[str, str, str]:
    """Return the wildcards a gateway subscribes to: every terminal's event, frame and state."""
    return (
        subscription(TopicKind.EVENT, prefix),
        subscription(TopicKind.FRAME, prefix),
        subscription(TopicKind.STATE, prefix),
    )


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> TerminalTopic:
    """Map a concrete topic under `prefix` to ``(device, kind)``; raise `TerminalProfileError`."""
    _check_prefix(prefix)
    head = f"{prefix}/terminal/"
    if type(topic) is not str or not topic.startswith(head):
        raise TerminalProfileError(ErrorReason.BAD_TOPIC, "not a terminal topic under this prefix")
    device, slash, last = topic[len(head) :].partition("/")
    if not slash or not is_valid_device(device):
        raise TerminalProfileError(ErrorReason.BAD_TOPIC, "bad device level", field="device")
    try:
        kind = TopicKind(last)
    except ValueError:
        raise TerminalProfileError(
            ErrorReason.BAD_TOPIC, "unknown topic kind", field="kind"
        ) from None
    return TerminalTopic(device, kind)
