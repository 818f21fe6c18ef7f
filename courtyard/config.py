"""Configuration: a TOML file plus ``COURTYARD_*`` environment variables (the environment wins).

Nested keys use ``__`` in the environment: ``COURTYARD_CLOUD__DATABASE_URL=postgresql://…``
overrides ``[cloud] database_url`` of the file. No secret has a default: keys are files made by
``courtyard keys`` or at first start, referenced by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cloud_sync.service.settings import CloudSettings
from gateway.settings import GatewaySettings

__all__ = ["CourtyardSettings", "load_settings"]


class CourtyardSettings(BaseSettings):
    """Everything one ``courtyard`` process may be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="COURTYARD_", env_nested_delimiter="__", extra="forbid"
    )

    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"
    cloud: CloudSettings | None = None
    gateway: GatewaySettings | None = None


def load_settings(path: Path | None = None) -> CourtyardSettings:
    """Load settings from ``path`` (TOML, optional) overlaid by the environment."""
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"configuration file {path} does not exist")

    class _FromFile(CourtyardSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    return _FromFile()
