"""docs/sync-protocol.md: every example is byte-exact and means what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud_sync.protocol import Ack, CommandBody, EventBatch, verify_command
from cloud_sync.protocol.wire import decode_object, encode
from trust import VerifyKey

DOC = Path(__file__).resolve().parents[2] / "docs" / "sync-protocol.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```json\n(.*?)\n```", re.DOTALL)
TYPES = {"gateway.started", "door.online", "door.event", "command.status", "gateway.alarm"}


def examples(kind: str) -> list[bytes]:
    found = [body.encode() for k, body in EXAMPLE.findall(DOC.read_text()) if k == kind]
    assert found, f"no {kind} example in {DOC.name}"
    return found


@pytest.mark.parametrize("raw", examples("batch"))
def test_batch_examples_are_byte_exact(raw: bytes) -> None:
    batch = EventBatch.decode(raw)

    assert batch.encode() == raw
    assert {e.type for e in batch.events} <= TYPES


@pytest.mark.parametrize("raw", examples("data"))
def test_data_examples_are_byte_exact(raw: bytes) -> None:
    assert encode(decode_object(raw, 16 * 1024)) == raw


@pytest.mark.parametrize("raw", examples("ack"))
def test_ack_examples_are_byte_exact(raw: bytes) -> None:
    assert Ack.decode(raw).encode() == raw


@pytest.mark.parametrize("raw", examples("status"))
def test_status_examples_are_what_the_gateway_sends(raw: bytes) -> None:
    from gateway.presence import OFFLINE, ONLINE

    assert raw in (ONLINE, OFFLINE)


def test_command_example_verifies_under_the_documented_key() -> None:
    text = DOC.read_text()
    key = VerifyKey.from_text(re.search(r"signed by the key `([\w-]+)`", text).group(1))  # type: ignore[union-attr]
    [raw] = examples("command")
    body_text = decode_object(raw, 4096)["b"]
    body = CommandBody.from_obj(decode_object(body_text.encode(), 4096))

    verified = verify_command(raw, {key.kid: key}, body.gateway, body.issued_at + 1)

    assert verified == body
    assert encode(body.to_obj()).decode() == body_text
    assert f"kid `{key.kid}`" in text
