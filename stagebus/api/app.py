"""The FastAPI application of ``stagebus api``.

Stable for routers mounted later (the web inspector's ``/ui``): :func:`create_app` builds the
app from explicit settings; ``app.state.service`` is the :class:`~stagebus.api.service.Service`
(store, projections), and :func:`stagebus.api.auth.require_owner` is the dependency that
returns the caller's owner or raises the 401 error body. Include a router with
``app.include_router(router)``; the one exception handler already covers it.

In embedded mode (the default when ``STAGEBUS_BROKER`` is ``memory``) the app runs the stage
runner in a thread (:mod:`.runner`), started and stopped by the app's lifespan, so a SIGTERM
lets the round in progress finish. With a Redis/AMQP broker it only appends to the log and the
fleet (relay and workers) processes the batches.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.telemetry import Telemetry
from stagebus.api import keys, schemas
from stagebus.api.auth import pipelines_of, require_owner
from stagebus.api.batches import BatchPipelines
from stagebus.api.body import BodyLimit
from stagebus.api.errors import CODES, install_handlers
from stagebus.api.inspector import create_inspector
from stagebus.api.processors import load_processors
from stagebus.api.ratelimit import RateLimits
from stagebus.api.routes import router
from stagebus.api.runner import BackgroundRunner
from stagebus.api.service import Service
from stagebus.api.settings import ApiSettings
from stagebus.artifacts.location import open_artifacts
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.settings import Settings
from stagebus.store import open_store

API_PREFIX = "/api/v1"
log = logging.getLogger("stagebus.api")


class RedactKeys(logging.Filter):
    """Masks API keys in log records (uvicorn's access log quotes the query string, where a
    careless client may have put one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(keys.redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = keys.redact(record.msg)
        return True


def rate_storage_url(settings: Settings, api: ApiSettings) -> str:
    if api.rate_storage:
        return api.rate_storage
    broker = settings.broker
    if broker.startswith(("redis://", "rediss://")):
        return broker
    if broker.startswith("unix://"):
        return "redis+" + broker
    return "memory://"


def is_embedded(settings: Settings, api: ApiSettings) -> bool:
    return api.embedded if api.embedded is not None else settings.broker in ("", "memory")


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> FastAPI:
    """The app over the home ``settings`` names, with ``api_settings``' limits (both default to
    the environment). Opens the log and projections now; the lifespan closes them."""
    settings = settings or Settings()
    api = api_settings or ApiSettings()
    store = open_store(settings.store_url)
    projections = Projections(store, None if store.url == "memory://" else settings.projections_path)
    processors = load_processors(api.processors)
    pipelines = BatchPipelines(load_pipelines(settings.pipelines), processors, settings.home / "exports")
    background: BackgroundRunner | None = None
    artifacts = open_artifacts(settings)
    if is_embedded(settings, api):
        logging.getLogger("dramatiq").setLevel(logging.WARNING)
        runner = EmbeddedRunner(store, projections, artifacts, pipelines, workers=api.runner_workers,
                                telemetry=Telemetry(settings.logs_dir / "tasks.ndjson"))
        background = BackgroundRunner(runner, projections, poll_s=api.runner_poll_s)
    service = Service(store, projections, processors, pipelines, home=settings.home, artifacts=artifacts,
                      shared_datasets=api.datasets,
                      on_submitted=background.wake if background is not None else lambda: None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name in ("uvicorn.access", "uvicorn.error", "stagebus"):
            logging.getLogger(name).addFilter(RedactKeys())
        projections.catch_up()
        if background is not None:
            background.start()
        log.info("stagebus api ready (%s mode, rate limits in %s)", "embedded" if background else "publish-only",
                 app.state.rate_limits.describe())
        try:
            yield
        finally:
            if background is not None:
                background.stop()
            projections.close()
            store.close()

    app = FastAPI(title="stagebus", version="1", lifespan=lifespan, openapi_url=f"{API_PREFIX}/openapi.json",
                  docs_url=f"{API_PREFIX}/docs", redoc_url=None,
                  description="Pipelines and batches over the stagebus event log. Every non-2xx answer is "
                              '`{"error": {"code", "message"}}` (+`details` for validation). Codes:\n\n'
                              + "\n".join(f"- `{code}` ({status}): {meaning}"
                                          for code, (status, meaning) in CODES.items()))
    app.state.service = service
    app.state.api_settings = api
    app.state.settings = settings
    app.state.rate_limits = RateLimits(rate_storage_url(settings, api))
    app.state.runner = background
    install_handlers(app)
    app.include_router(router)
    # The web inspector under /ui, behind the same keys and tenant scope (not part of /api/v1's spec).
    app.include_router(create_inspector(settings, owner_dependency=require_owner,
                                        owner_pipelines=lambda owner: pipelines_of(service.fresh(), owner)),
                       include_in_schema=False)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec plus the pipeline bodies, which routes read themselves (so that a 400
    lists processor config errors together with the body's)."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.PipelineCreate, schemas.PipelineUpdate):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app.openapi_schema = spec
    return app.openapi_schema
