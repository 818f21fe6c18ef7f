from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from courtyard.config import load_settings

TOML = """
log_level = "debug"

[cloud]
database_url = "sqlite+aiosqlite:///cloud.db"
key_dir = "keys"
command_ttl_ms = 20000

[cloud.broker]
host = "127.0.0.1"
port = 1883

[gateway]
id = "gw-7"
data_dir = "gw"
cloud_keys = ["keys/command-signing.key.pub"]

[[gateway.doors]]
id = "b1-gate"
device = "ctrl-b1-gate"
pulse_ms = 2500
"""


def test_toml_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "courtyard.toml"
    path.write_text(TOML)
    settings = load_settings(path)
    assert settings.log_level == "debug"
    assert settings.cloud is not None
    assert settings.cloud.command_ttl_ms == 20_000
    assert settings.gateway is not None
    assert settings.gateway.doors[0].pulse_ms == 2500
    monkeypatch.setenv("COURTYARD_CLOUD__COMMAND_TTL_MS", "10000")
    monkeypatch.setenv("COURTYARD_LOG_LEVEL", "warning")
    again = load_settings(path)
    assert again.cloud is not None
    assert again.cloud.command_ttl_ms == 10_000
    assert again.log_level == "warning"


def test_bad_values_and_typos_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace("command_ttl_ms = 20000", "command_ttl_ms = 90000"))
    with pytest.raises(ValidationError, match="command_ttl_ms"):
        load_settings(path)
    path.write_text(TOML.replace("pulse_ms = 2500", "pulse_msec = 2500"))
    with pytest.raises(ValidationError, match="pulse_msec"):
        load_settings(path)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _toml_blocks(doc: str, first_line: str) -> list[str]:
    text = (DOCS / doc).read_text("utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    return [b for b in blocks if b.startswith(first_line)]


def test_the_operations_gateway_example_loads_with_its_water_line(tmp_path: Path) -> None:
    blocks = _toml_blocks("operations.md", "# gateway.toml")
    assert len(blocks) == 2  # the gateway file and its Modbus water line
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(blocks))
    gateway = load_settings(path).gateway
    assert gateway is not None
    assert gateway.health_interval_s == 300
    assert [(b.name, b.baud, b.parity) for b in gateway.buses] == [("water-1", 9600, "N")]
    assert [(m.id, m.effective_kind) for m in gateway.meters] == [
        ("wm-3-201", "water"),
        ("wm-3-202", "water"),
    ]


METER_BASE = (
    TOML
    + """
[[gateway.buses]]
name = "line-1"
url = "loop://"

[[gateway.meters]]
id = "m-1"
bus = "line-1"
"""
)


@pytest.mark.parametrize(
    ("meter", "kind"),
    [
        ('protocol = "dlt645"\naddress = "001500076004"', "electricity"),
        ('protocol = "modbus"\naddress = "1"\nmodel = "sdm120"', "electricity"),
        ('protocol = "modbus"\naddress = "1"\nmodel = "sdm630"', "electricity"),
        ('protocol = "modbus"\naddress = "1"\nmodel = "water"', "water"),
        ('protocol = "cjt188"\naddress = "00000000000012"', "water"),
        ('protocol = "cjt188"\naddress = "00000000000012"\nmeter_type = "hot_water"', "water"),
        ('protocol = "cjt188"\naddress = "00000000000012"\nmeter_type = "gas"', "gas"),
        ('protocol = "cjt188"\naddress = "00000000000012"\nkind = "water"', "water"),
    ],
)
def test_a_meter_kind_is_derived_from_its_protocol(tmp_path: Path, meter: str, kind: str) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(METER_BASE + meter + "\n")
    gateway = load_settings(path).gateway
    assert gateway is not None
    assert gateway.meters[0].effective_kind == kind


@pytest.mark.parametrize(
    "meter",
    [
        'protocol = "dlt645"\naddress = "001500076004"\nkind = "water"',
        'protocol = "modbus"\naddress = "1"\nmodel = "water"\nkind = "electricity"',
        'protocol = "cjt188"\naddress = "00000000000012"\nmeter_type = "gas"\nkind = "water"',
        'protocol = "cjt188"\naddress = "00000000000012"\nkind = "steam"',
    ],
)
def test_a_kind_that_contradicts_the_protocol_is_an_error(tmp_path: Path, meter: str) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(METER_BASE + meter + "\n")
    with pytest.raises(ValidationError, match="kind"):
        load_settings(path)
