"""Serving the app with uvicorn: one process, or ``--workers N`` processes sharing the port.

With several workers each process is an app from :func:`app_from_environment`; in embedded
mode the stage runner then runs once, in the supervising process, not in every worker.
uvicorn handles SIGTERM gracefully: it stops accepting, finishes requests in flight, then runs
the app's lifespan shutdown (which lets a stage round in progress finish).
"""

from __future__ import annotations

import os
import signal

import uvicorn
from fastapi import FastAPI

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.telemetry import Telemetry
from stagebus.api.app import create_app, is_embedded
from stagebus.api.batches import BatchPipelines
from stagebus.api.processors import load_processors
from stagebus.api.runner import BackgroundRunner
from stagebus.api.settings import ApiSettings
from stagebus.artifacts.location import open_artifacts
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.settings import Settings
from stagebus.store import open_store


def app_from_environment() -> FastAPI:
    """uvicorn's factory for worker processes: settings from ``STAGEBUS_*`` alone."""
    return create_app(Settings(), ApiSettings())


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings, api: ApiSettings, *, host: str, port: int, workers: int, log_level: str) -> None:
    level = log_level.lower()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found: this
    # one ends the process with status 0 through the normal exit path (atexit handlers run).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if workers <= 1:
        uvicorn.run(create_app(settings, api), host=host, port=port, log_level=level, timeout_graceful_shutdown=30)
        return
    # Worker processes read their settings from the environment: hand the resolved ones down.
    os.environ["STAGEBUS_HOME"] = str(settings.home)
    if settings.store:
        os.environ["STAGEBUS_STORE"] = settings.store
    embedded = is_embedded(settings, api)
    os.environ["STAGEBUS_API_EMBEDDED"] = "false"
    background = _supervisor_runner(settings, api) if embedded else None
    if background is not None:
        background.start()
    try:
        uvicorn.run("stagebus.api.server:app_from_environment", factory=True, host=host, port=port,
                    workers=workers, log_level=level, timeout_graceful_shutdown=30)
    finally:
        if background is not None:
            background.stop()


def _supervisor_runner(settings: Settings, api: ApiSettings) -> BackgroundRunner:
    store = open_store(settings.store_url)
    projections = Projections(store, settings.projections_path)
    pipelines = BatchPipelines(load_pipelines(settings.pipelines), load_processors(api.processors),
                               settings.home / "exports")
    runner = EmbeddedRunner(store, projections, open_artifacts(settings), pipelines, workers=api.runner_workers,
                            telemetry=Telemetry(settings.logs_dir / "tasks.ndjson"))
    return BackgroundRunner(runner, projections, poll_s=min(api.runner_poll_s, 0.2))
