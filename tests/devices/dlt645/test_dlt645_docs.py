"""docs/protocol-dlt645.md stays true: byte-exact frames, and the code's identifier table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.dlt645 import IDENTIFIERS_1997, IDENTIFIERS_2007, decode, encode

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol-dlt645.md"
TEXT = DOC.read_text(encoding="utf-8")
HEX_BLOCK = re.compile(r"^```hex\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DI_ROW = re.compile(
    r"^\| `([0-9A-F]{4}|[0-9A-F]{8})` \| (.*?) \| (.*?) \| `(.*?)` \|", re.MULTILINE
)

FRAMES = [line for block in HEX_BLOCK.findall(TEXT) for line in block.splitlines() if line]


def test_the_document_has_examples() -> None:
    assert len(FRAMES) >= 20


@pytest.mark.parametrize("line", FRAMES)
def test_frames_are_byte_exact(line: str) -> None:
    wire = bytes.fromhex(line)
    preamble = len(wire) - len(wire.lstrip(b"\xfe"))
    assert encode(decode(wire), preamble=preamble) == wire


def test_the_identifier_table_is_the_code_table() -> None:
    documented = {code: (name, unit, label) for code, name, unit, label in DI_ROW.findall(TEXT)}
    table = {
        row.code: (row.name, row.unit, row.format.label)
        for row in [*IDENTIFIERS_2007.values(), *IDENTIFIERS_1997.values()]
    }
    assert documented == table
