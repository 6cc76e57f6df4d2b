"""Configuration read once at the edge (flags and ``STAGEBUS_*`` environment), passed down explicitly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
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
    artifacts: str = ""  # "" -> <home>/artifacts; a directory; or s3://bucket/prefix

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

    @field_validator("artifacts")
    @classmethod
    def _a_path_or_bucket(cls, value: str) -> str:
        if "://" in value:
            parse_s3_url(value)
        return value

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
    def artifacts_s3(self) -> S3Location | None:
        """The bucket and prefix when artifacts live in S3-compatible object storage."""
        return parse_s3_url(self.artifacts) if "://" in self.artifacts else None

    @property
    def artifacts_root(self) -> Path:
        """This machine's artifact directory: the objects themselves for a local store; for S3 the
        read-through cache, beside the browsable views, work directories and the served view."""
        if self.artifacts_s3 is not None:
            return self.home / "artifacts-cache"
        return Path(self.artifacts) if self.artifacts else self.home / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


class S3Location(NamedTuple):
    bucket: str
    prefix: str  # no leading or trailing "/"; "" for the bucket's root

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]``; credentials never belong in it (they come from the AWS chain),
    so a URL with userinfo is refused without being echoed."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "s3":
        raise ValueError("--artifacts/STAGEBUS_ARTIFACTS must be a directory or s3://BUCKET[/PREFIX]")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or "?" in rest or "#" in rest:
        raise ValueError("--artifacts/STAGEBUS_ARTIFACTS takes s3://BUCKET[/PREFIX] only; credentials, "
                         "endpoint and region come from the AWS variables or profile (AWS_ENDPOINT_URL, …)")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"--artifacts/STAGEBUS_ARTIFACTS: {bucket!r} is not an S3 bucket name")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"--artifacts/STAGEBUS_ARTIFACTS: prefix {prefix!r} has an empty, '.' or '..' part")
    return S3Location(bucket, prefix)


def _parses(url: str, option: str) -> str:
    try:
        urlsplit(url).port  # noqa: B018 - parsing is the check
    except ValueError as exc:  # the URL itself is not echoed: it may hold a password
        raise ValueError(f"{option} is not a valid URL: {exc}") from None
    return url
