"""Configuration read once at the edge (flags and ``STAGEBUS_*`` environment), passed down explicitly."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stagebus.store.keys import LOG_FILE, PROJECTIONS_DIR


class Settings(BaseSettings):
    """Where stagebus keeps its state and which transports it uses."""

    model_config = SettingsConfigDict(env_prefix="STAGEBUS_", extra="ignore")

    home: Path = Path(".stagebus")
    store: str = ""  # "" -> sqlite:///<home>/log.db
    broker: str = "memory"
    log_level: str = "INFO"
    pipelines: str = ""  # extra pipelines, "module:attribute,…", besides the reference pipeline

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "redis://", "rediss://", "unix://", "memory://")):
            raise ValueError("STAGEBUS_STORE must be sqlite:///PATH, redis://…, rediss://… or unix://…")
        return _parses(value, "--store/STAGEBUS_STORE")

    @field_validator("broker")
    @classmethod
    def _broker_parses(cls, value: str) -> str:
        return _parses(value, "STAGEBUS_BROKER")

    @field_validator("home")
    @classmethod
    def _a_directory(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"--home/STAGEBUS_HOME {str(value)!r} is not a directory")
        return value

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.home / LOG_FILE}"

    @property
    def projections_path(self) -> Path:
        """The projections directory: generation files plus ``CURRENT`` naming the live one."""
        return self.home / PROJECTIONS_DIR

    @property
    def artifacts_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def _parses(url: str, option: str) -> str:
    try:
        urlsplit(url).port  # noqa: B018 - parsing is the check
    except ValueError as exc:  # the URL itself is not echoed: it may hold a password
        raise ValueError(f"{option} is not a valid URL: {exc}") from None
    return url
