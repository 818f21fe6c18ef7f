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
