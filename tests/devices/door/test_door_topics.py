"""Door topics: names, gateway wildcards, and taking a received topic apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.door import (
    DEFAULT_PREFIX,
    DoorProfileError,
    DoorTopic,
    DoorTopics,
    ErrorReason,
    TopicKind,
    gateway_subscriptions,
    parse_topic,
    subscription,
)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
names = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
prefixes = st.lists(names, min_size=1, max_size=8).map("/".join)


def test_topics_of_one_controller() -> None:
    topics = DoorTopics("site", "b3-gate")
    assert topics.cmd == "site/door/b3-gate/cmd"
    assert topics.ack == "site/door/b3-gate/ack"
    assert topics.event == "site/door/b3-gate/event"
    assert topics.state == "site/door/b3-gate/state"
    assert topics.topic(TopicKind.EVENT) == topics.event


def test_default_prefix_and_wildcards() -> None:
    assert DEFAULT_PREFIX == "site"
    assert subscription(TopicKind.EVENT) == "site/door/+/event"
    assert subscription(TopicKind.STATE, "c42/site") == "c42/site/door/+/state"
    assert gateway_subscriptions("p") == ("p/door/+/ack", "p/door/+/event", "p/door/+/state")


@given(prefix=prefixes, device=names, kind=st.sampled_from(TopicKind))
def test_parse_topic_inverts_door_topics(prefix: str, device: str, kind: TopicKind) -> None:
    topic = DoorTopics(prefix, device).topic(kind)
    assert parse_topic(topic, prefix) == DoorTopic(device, kind)
    parsed_device, parsed_kind = parse_topic(topic, prefix)
    assert (parsed_device, parsed_kind) == (device, kind)


@pytest.mark.parametrize(
    "topic",
    [
        "other/door/gate/cmd",
        "site/doors/gate/cmd",
        "site/door/gate",
        "site/door//cmd",
        "site/door/gate/cmd/extra",
        "site/door/gate/command",
        "site/door/+/event",
        "site/door/#",
        "site/door/ga te/ack",
        "site/door/" + "g" * 65 + "/ack",
        "sitex/door/gate/ack",
        "",
    ],
)
def test_parse_topic_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(DoorProfileError) as caught:
        parse_topic(topic, "site")
    assert caught.value.reason is ErrorReason.BAD_TOPIC


@pytest.mark.parametrize(
    ("prefix", "device"),
    [
        ("", "gate"),
        ("/site", "gate"),
        ("site/", "gate"),
        ("si+te", "gate"),
        ("site/#", "gate"),
        ("a/b/c/d/e/f/g/h/i", "gate"),
        ("site", ""),
        ("site", "a/b"),
        ("site", "+"),
        ("site", "x" * 65),
    ],
)
def test_topic_parts_are_validated(prefix: str, device: str) -> None:
    with pytest.raises(DoorProfileError) as caught:
        DoorTopics(prefix, device)
    assert caught.value.reason is ErrorReason.BAD_TOPIC


def test_wildcard_prefix_is_validated() -> None:
    with pytest.raises(DoorProfileError):
        subscription(TopicKind.ACK, "a/+")
    with pytest.raises(DoorProfileError):
        parse_topic("a/+/door/x/ack", "a/+")
