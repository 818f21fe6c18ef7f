"""docs/protocol-lockboard.md stays true: its frames are byte-exact, its refusals refuse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.lockboard import LockboardError, Reason, decode, encode

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol-lockboard.md"
BLOCK = re.compile(r"^```(frames|refused)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def lines(kind: str) -> list[tuple[bytes, str]]:
    """(bytes, comment) for every line of the document's blocks of `kind`."""
    found = []
    for block_kind, body in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        if block_kind != kind:
            continue
        for line in body.splitlines():
            wire, _, comment = line.partition("#")
            found.append((bytes.fromhex(wire), comment.strip()))
    return found


FRAMES = lines("frames")
REFUSED = lines("refused")


def test_the_document_has_examples() -> None:
    assert len(FRAMES) >= 12
    assert len(REFUSED) >= 8


@pytest.mark.parametrize(("wire", "comment"), FRAMES, ids=[c for _, c in FRAMES])
def test_frames_are_byte_exact(wire: bytes, comment: str) -> None:
    frame = decode(wire)
    assert encode(frame) == wire
    assert comment.startswith(f"{wire[2]:02X}H")


@pytest.mark.parametrize(("wire", "comment"), REFUSED, ids=[c for _, c in REFUSED])
def test_refusals_refuse_for_the_stated_reason(wire: bytes, comment: str) -> None:
    with pytest.raises(LockboardError) as caught:
        decode(wire)
    assert caught.value.reason is Reason(comment.split()[0])
