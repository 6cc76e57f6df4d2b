"""Warehouse load tests: a PostgreSQL database of the test's own, and homes the toy pipeline filled.

PostgreSQL is the machine's (``STAGEBUS_TEST_POSTGRES``, default ``postgresql://postgres@127.0.0.1:5432/
postgres``, trust auth); each test gets a fresh database, dropped ``WITH (FORCE)`` after. When the
server does not answer the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support import toy

ADMIN_DSN = os.environ.get("STAGEBUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def require_postgres() -> None:
    """Skip (locally) or fail (under CI) when psycopg is missing or PostgreSQL does not answer."""
    try:
        import psycopg

        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return
    except Exception as exc:  # ImportError or any connection failure
        message = f"PostgreSQL is not reachable at {ADMIN_DSN} ({type(exc).__name__}: {exc})".splitlines()[0]
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty database; its DSN. Dropped (connections and all) afterwards."""
    import psycopg

    require_postgres()
    name = f"sb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` run on the warehouse at ``url`` (postgresql:// or sqlite:///)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute(statement.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]


def run_toy(home: Path, run_id: str, partitions: dict[str, list[dict[str, Any]]],
            pipeline: Pipeline | None = None) -> int:
    """Publish ``partitions`` of dataset ``nums`` in run ``run_id`` and run ``pipeline`` (the toy
    pipeline, load → double → total, by default) embedded until idle; returns the log's head."""
    pipeline = pipeline or toy.toy_pipeline()
    home.mkdir(parents=True, exist_ok=True)
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    try:
        store.append_one(RunOpened(run_id=run_id, pipeline=pipeline.name, pipeline_version=pipeline.version,
                                   plan=pipeline.plan()))
        for name, records in partitions.items():
            path = home / f"source-{run_id}-{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
            data = path.read_bytes()
            store.append_one(PartitionIngested(run_id=run_id, dataset="nums", partition=name, uri=path.as_uri(),
                                               content_hash=hashlib.sha256(data).hexdigest(), size=len(data)))
        store.append_one(RunSealed(run_id=run_id, partitions=tuple(f"nums/{name}" for name in partitions)))
        with EmbeddedRunner(store, projections, home / "artifacts", PipelineRegistry([pipeline]),
                            workers=2) as runner:
            assert runner.run().ok
        return store.head()
    finally:
        projections.close()
        store.close()
