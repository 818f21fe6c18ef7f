"""docs/protocol-cjt188.md stays true: every frame in its ``cjt188`` blocks decodes, re-encodes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.cjt188 import DiOrder, decode, encode, from_frame, to_frame

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol-cjt188.md"
BLOCK = re.compile(r"^```cjt188\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINE = re.compile(r"^(frame|swapped)\s+((?:[0-9A-F]{2} )*[0-9A-F]{2})(?:\s{2,}.*)?$")


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
    ("kind", "wire"), examples(), ids=lambda v: v if isinstance(v, str) else v.hex()[:40]
)
def test_examples_are_byte_exact_messages(kind: str, wire: bytes) -> None:
    frame = decode(wire)
    preamble = len(wire) - len(wire.lstrip(b"\xfe"))
    assert encode(frame, preamble=preamble) == wire
    order = DiOrder.LOW_FIRST if kind == "swapped" else DiOrder.HIGH_FIRST
    message = from_frame(frame, di_order=order)
    assert to_frame(message, frame.meter_type, frame.address, di_order=order) == frame
