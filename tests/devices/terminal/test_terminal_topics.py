"""Terminal topics: names, gateway wildcards, and taking a received topic apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.terminal import (
    DEFAULT_PREFIX,
    QOS,
    ErrorReason,
    TerminalProfileError,
    TerminalTopic,
    TerminalTopics,
    TopicKind,
    gateway_subscriptions,
    parse_topic,
    subscription,
)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
names = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
prefixes = st.lists(names, min_size=1, max_size=8).map("/".join)


def test_topics_of_one_terminal() -> None:
    topics = TerminalTopics("site", "term-a")
    assert topics.event == "site/terminal/term-a/event"
    assert topics.frame == "site/terminal/term-a/frame"
    assert topics.display == "site/terminal/term-a/display"
    assert topics.state == "site/terminal/term-a/state"
    assert topics.topic(TopicKind.FRAME) == topics.frame
    assert QOS == 1


def test_default_prefix_and_wildcards() -> None:
    assert DEFAULT_PREFIX == "site"
    assert subscription(TopicKind.EVENT) == "site/terminal/+/event"
    assert subscription(TopicKind.DISPLAY, "c42/site") == "c42/site/terminal/+/display"
    assert gateway_subscriptions("p") == (
        "p/terminal/+/event",
        "p/terminal/+/frame",
        "p/terminal/+/state",
    )


@given(prefix=prefixes, device=names, kind=st.sampled_from(TopicKind))
def test_parse_topic_inverts_terminal_topics(prefix: str, device: str, kind: TopicKind) -> None:
    topic = TerminalTopics(prefix, device).topic(kind)
    assert parse_topic(topic, prefix) == TerminalTopic(device, kind)


@pytest.mark.parametrize(
    "topic",
    [
        "other/terminal/term-a/event",
        "site/terminals/term-a/event",
        "site/door/term-a/event",
        "site/terminal/term-a",
        "site/terminal//event",
        "site/terminal/term-a/event/extra",
        "site/terminal/term-a/frames",
        "site/terminal/term-a/cmd",
        "site/terminal/+/event",
        "site/terminal/#",
        "site/terminal/te rm/frame",
        "site/terminal/" + "t" * 65 + "/frame",
        "sitex/terminal/term-a/state",
        "",
    ],
)
def test_parse_topic_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(TerminalProfileError) as caught:
        parse_topic(topic, "site")
    assert caught.value.reason is ErrorReason.BAD_TOPIC


@pytest.mark.parametrize(
    ("prefix", "device"),
    [
        ("", "term-a"),
        ("/site", "term-a"),
        ("site/", "term-a"),
        ("si+te", "term-a"),
        ("site/#", "term-a"),
        ("a/b/c/d/e/f/g/h/i", "term-a"),
        ("site", ""),
        ("site", "a/b"),
        ("site", "+"),
        ("site", "#"),
        ("site", "x" * 65),
    ],
)
def test_topic_parts_are_validated(prefix: str, device: str) -> None:
    with pytest.raises(TerminalProfileError) as caught:
        TerminalTopics(prefix, device)
    assert caught.value.reason is ErrorReason.BAD_TOPIC
    assert caught.value.field in {"prefix", "device"}


def test_wildcard_prefix_is_validated() -> None:
    with pytest.raises(TerminalProfileError):
        subscription(TopicKind.EVENT, "a/+")
    with pytest.raises(TerminalProfileError):
        gateway_subscriptions("#")
    with pytest.raises(TerminalProfileError):
        parse_topic("a/+/terminal/x/event", "a/+")
