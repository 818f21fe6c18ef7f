"""docs/door-profile.md stays true: its byte-exact examples encode as shown, its refusals refuse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.door import (
    DoorProfileError,
    encode,
    parse_ack,
    parse_command,
    parse_event,
    parse_state,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "door-profile.md"
BLOCK = re.compile(r"^```(json|text)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [
        line
        for found_language, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))
        if found_language == language
        for line in body.splitlines()
        if line.strip()
    ]


def parser_for(line: str) -> object:
    if '"op"' in line:
        return parse_command
    if '"ok"' in line:
        return parse_ack
    if '"type"' in line:
        return parse_event
    return parse_state


EXAMPLES = blocks("json")
REFUSALS = [line for line in blocks("text") if line.startswith("{")]


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert len(REFUSALS) >= 5


@pytest.mark.parametrize("line", EXAMPLES)
def test_json_examples_are_byte_exact(line: str) -> None:
    parser = parser_for(line)
    assert callable(parser)
    wire = line.encode()
    assert encode(parser(wire)) == wire


@pytest.mark.parametrize("line", REFUSALS)
def test_documented_refusals_are_refused(line: str) -> None:
    payload, expected = re.split(r"\s{2,}", line.strip(), maxsplit=1)
    reason, field = re.fullmatch(r"(\w+) \((\w+)\)", expected).groups()  # type: ignore[union-attr]
    parser = parser_for(payload)
    assert callable(parser)
    with pytest.raises(DoorProfileError) as caught:
        parser(payload.encode())
    assert (caught.value.reason, caught.value.field) == (reason, field)
