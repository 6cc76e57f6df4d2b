"""What every command shares: settings read once at the edge, and lazily opened state.

Commands get an :class:`AppContext` from :func:`get_context`; it opens the event log and the
projections on first use, read-only or not, and closes them when the command ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import pydantic
import typer

from stagebus.errors import InvalidInput, StoreUnavailable
from stagebus.events import PlannedStage
from stagebus.projections import Projections
from stagebus.settings import Settings
from stagebus.store import EventStore, open_store
from stagebus.store.urls import redact_url

log = logging.getLogger("stagebus.cli")

FORMATS = ("table", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

class PipelinePlan(NamedTuple):
    name: str
    version: str
    plan: tuple[PlannedStage, ...]


def resolve_plan(pipeline_name: str, settings: Settings | None = None) -> PipelinePlan:
    """The plan a producer records in ``RunOpened`` for ``pipeline_name``: the reference
    pipeline, or one named by ``STAGEBUS_PIPELINES``. Any other name is refused."""
    from stagebus.pipeline.registry import load_pipelines

    pipeline = load_pipelines(settings.pipelines if settings else "").get(pipeline_name)
    return PipelinePlan(pipeline.name, pipeline.version, pipeline.plan())


def make_settings(home: str | None, store: str | None, log_level: str | None,
                  artifacts: str | None = None) -> Settings:
    """Settings from the global options; pydantic fills the rest from ``STAGEBUS_*``."""
    given: dict[str, object] = {}
    if home is not None:
        given["home"] = home
    if store is not None:
        given["store"] = store
    if artifacts is not None:
        given["artifacts"] = artifacts
    if log_level is not None:
        level = log_level.upper()
        if level not in LOG_LEVELS:
            raise InvalidInput(f"unknown log level {log_level!r} (use one of {', '.join(LOG_LEVELS)})")
        given["log_level"] = level
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInput(f"{where}: {error['msg'].removeprefix('Value error, ')}") from None


@dataclass
class AppContext:
    settings: Settings
    _stores: dict[bool, EventStore] = field(default_factory=dict)
    _projections: dict[bool, Projections] = field(default_factory=dict)

    def store(self, *, readonly: bool = False) -> EventStore:
        """The event log named by ``--store`` (default: the home's SQLite log)."""
        if readonly not in self._stores:
            try:
                self._stores[readonly] = open_store(self.settings.store_url, readonly=readonly)
            except ImportError as exc:
                raise StoreUnavailable(f"cannot open {redact_url(self.settings.store_url)}: {exc}") from None
        return self._stores[readonly]

    def require_log(self) -> None:
        """Refuse, with :class:`StoreUnavailable`, a home that has no log yet: commands that
        only check or clean up must not create one."""
        self.store(readonly=True).head()

    def projections(self, *, readonly: bool = False) -> Projections:
        """The home's projections over :meth:`store`; read-only ones change no file."""
        if readonly not in self._projections:
            store = self.store(readonly=readonly)
            root = None if store.url == "memory://" else self.settings.projections_path
            self._projections[readonly] = Projections(store, root, readonly=readonly)
        return self._projections[readonly]

    def close(self) -> None:
        for projections in self._projections.values():
            projections.close()
        for store in self._stores.values():
            store.close()
        self._projections.clear()
        self._stores.clear()


def get_context(ctx: typer.Context) -> AppContext:
    """The command's :class:`AppContext`, made by the app callback."""
    app = ctx.find_object(AppContext)
    if app is None:  # a command invoked without the app callback (only in tests of one module)
        app = AppContext(Settings())
        ctx.obj = app
    return app


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"unknown {what} {value!r} (use one of {', '.join(choices)})")
    return value
