"""docs/protocol-modbus.md stays true: every frame in its ``modbus`` blocks decodes, re-encodes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.modbus import decode_reply, decode_request, encode

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol-modbus.md"
BLOCK = re.compile(r"^```modbus\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINE = re.compile(r"^(request|reply)\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s{2,}.*)?$")


def examples() -> list[tuple[str, bytes]]:
    found = []
    for body in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        for line in body.splitlines():
            match = LINE.match(line)
            assert match, f"not an example line: {line!r}"
            found.append((match[1], bytes.fromhex(match[2])))
    return found


def test_the_document_has_examples() -> None:
    assert len(examples()) >= 10


@pytest.mark.parametrize(
    ("kind", "adu"), examples(), ids=lambda v: v if isinstance(v, str) else v.hex()
)
def test_examples_are_byte_exact(kind: str, adu: bytes) -> None:
    frame = decode_request(adu) if kind == "request" else decode_reply(adu)
    assert encode(frame) == adu
