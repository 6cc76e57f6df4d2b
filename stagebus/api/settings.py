"""The HTTP service's settings: ``STAGEBUS_API_*`` (and the home's ``STAGEBUS_*``), read once."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Limits and transports of ``stagebus api``; :func:`stagebus.api.app.create_app` takes one."""

    model_config = SettingsConfigDict(env_prefix="STAGEBUS_API_", extra="ignore")

    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)  # past it: 413
    max_batch_records: int = Field(default=100_000, ge=1)  # past it: 413 TOO_MANY_RECORDS
    # Where rate-limit counters live: "memory://" (one process) or "redis://…" so several API
    # processes share each key's budget. "" means: the broker's Redis when STAGEBUS_BROKER is
    # Redis, else memory.
    rate_storage: str = ""
    default_rate: str = "100/minute"  # of a key created without --rate
    embedded: bool | None = None  # run the stage runner in-process; None: when the broker is memory
    runner_workers: int = Field(default=2, ge=1, le=64)
    runner_poll_s: float = Field(default=0.5, gt=0)
    page_limit: int = Field(default=50, ge=1, le=1000)  # default page size
    # Datasets every owner's pipelines may read as a source, comma-separated ("*": all of them).
    datasets: str = ""
    # Modules of custom processors, "module" or "module:attribute", comma-separated.
    processors: str = Field(default="", validation_alias="STAGEBUS_PROCESSORS")
