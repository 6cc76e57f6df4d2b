"""Replay: rebuild projections from the log into a new generation and swap it in atomically.

A full rebuild starts from position 0 in an empty file, applies the log in fixed-size batches
and reads no clock, so replaying the same log twice gives the same digest and the same file
bytes. While it builds, the file is private (no journal, no fsync: a crash leaves only a
leftover the next swap deletes); it is switched to WAL before it goes live.

``rebuild(projection=NAME)`` copies the live file, resets only that projection and replays it
from position 0 up to where the others are, then catches them all up together.

``verify`` rebuilds into a scratch file up to the live checkpoint and compares digests.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import NamedTuple

from stagebus.errors import StoreError
from stagebus.projections.generations import Generations
from stagebus.projections.runner import BATCH_SIZE, Progress, ProjectionDB
from stagebus.store import EventStore

log = logging.getLogger("stagebus.projections")


class ReplayResult(NamedTuple):
    generation: str
    events: int  # events applied by the rebuild
    checkpoint: int
    digest: str


class VerifyResult(NamedTuple):
    ok: bool
    checkpoint: int
    live_digest: str
    rebuilt_digest: str


def rebuild(generations: Generations, store: EventStore, *, projection: str | None = None,
            progress: Progress | None = None) -> ReplayResult:
    """Build a new generation from the log and make it live. Holds the generations lock."""
    with generations.lock():
        return _rebuild_locked(generations, store, projection=projection, progress=progress)


def _rebuild_locked(generations: Generations, store: EventStore, *, projection: str | None,
                    progress: Progress | None) -> ReplayResult:
    swept = generations.sweep()  # partial generations of killed rebuilds: their space comes back now
    if swept:
        log.info("deleted %d generation(s) left by killed rebuilds: %s", len(swept), ", ".join(swept))
    name, conn = generations.create()
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        db = ProjectionDB(conn)
        if projection is not None:
            db.projection(projection)  # an unknown name fails before any work
        live = generations.live()
        if projection is not None and live is not None and _copy_live(generations, live, conn):
            db.reset(projection)
        else:
            db.initialize()
        events = db.catch_up(store, batch_size=BATCH_SIZE, progress=progress)
        checkpoint, digest = db.checkpoint(), db.digest()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
    except BaseException:
        conn.close()
        generations.discard(name)
        raise
    generations.publish(name)
    return ReplayResult(name, events, checkpoint, digest)


def _copy_live(generations: Generations, live: str, target: sqlite3.Connection) -> bool:
    """Copy the live generation into ``target``; False when it is not this code's shape."""
    source = generations.open(live)
    try:
        if not ProjectionDB(source).compatible():
            return False
        source.backup(target)
    finally:
        source.close()
    target.execute("PRAGMA journal_mode = OFF")
    return True


def verify(generations: Generations, store: EventStore, *, progress: Progress | None = None) -> VerifyResult:
    """Rebuild into a scratch generation up to the live checkpoint and compare digests.

    The live digest and checkpoint are read in one snapshot, so writers catching up the live file
    meanwhile do not disturb the comparison. The scratch generation is never published.
    """
    live = generations.live()
    if live is None:
        raise StoreError("there are no projections to verify yet; run `stagebus replay` first")
    source = generations.open(live)
    try:
        source.execute("BEGIN")
        live_db = ProjectionDB(source)
        checkpoint, live_digest = live_db.checkpoint(), live_db.digest()
        source.execute("COMMIT")
    finally:
        source.close()
    with generations.lock():
        name, conn = generations.create()
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        scratch = ProjectionDB(conn)
        scratch.initialize()
        scratch.catch_up(store, until=checkpoint, progress=progress)
        rebuilt = scratch.digest()
    finally:
        conn.close()
        generations.discard(name)
    return VerifyResult(rebuilt == live_digest, checkpoint, live_digest, rebuilt)
