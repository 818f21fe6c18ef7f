"""docs/terminal-profile.md stays true: byte-exact examples encode as shown, refusals refuse."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from devices.terminal import (
    TerminalProfileError,
    encode,
    parse_display,
    parse_event,
    parse_state,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "terminal-profile.md"
BLOCK = re.compile(r"^```(json|text)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [
        line
        for found_language, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))
        if found_language == language
        for line in body.splitlines()
        if line.strip()
    ]


def parser_for(line: str) -> Callable[[bytes], object]:
    if '"online"' in line:
        return parse_state
    if '"op":"show"' in line or '"op":"session"' in line:
        return parse_display
    return parse_event


EXAMPLES = blocks("json")
REFUSALS = [line for line in blocks("text") if line.startswith("{")]


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= 15
    assert len(REFUSALS) >= 10
    assert {parser_for(line) for line in EXAMPLES} == {parse_event, parse_display, parse_state}


@pytest.mark.parametrize("line", EXAMPLES)
def test_json_examples_are_byte_exact(line: str) -> None:
    wire = line.encode()
    assert encode(parser_for(line)(wire)) == wire  # type: ignore[arg-type]


@pytest.mark.parametrize("line", REFUSALS)
def test_documented_refusals_are_refused(line: str) -> None:
    payload, expected = re.split(r"\s{2,}", line.strip(), maxsplit=1)
    found = re.fullmatch(r"(\w+) \((\w+)\)", expected)
    assert found is not None, expected
    with pytest.raises(TerminalProfileError) as caught:
        parser_for(payload)(payload.encode())
    assert (caught.value.reason, caught.value.field) == found.groups()
