"""The projections' checkpoints as anchors of the log (see :mod:`stagebus.store.anchors`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stagebus.errors import StoreUnavailable
from stagebus.projections.generations import FileGenerations, open_readonly
from stagebus.store.anchors import Anchor
from stagebus.store.keys import CHECKPOINTS_TABLE


def checkpoint_anchors(root: Path) -> list[Anchor]:
    """Every distinct ``(position, hash)`` the live generation's projections have applied up to,
    read without changing any file; none when there are no projections (yet) to read."""
    generations = FileGenerations(root)
    live = generations.live()
    if live is None:
        return []
    try:
        conn = open_readonly(generations.path(live))
    except StoreUnavailable:
        return []
    try:
        rows = conn.execute(f"SELECT DISTINCT position, hash FROM {CHECKPOINTS_TABLE} "
                            "WHERE position > 0 ORDER BY position DESC").fetchall()
    except sqlite3.DatabaseError:  # not projections of this code: nothing they say can be trusted
        return []
    finally:
        conn.close()
    return [Anchor(position, digest, f"projections checkpoint (generation {live})") for position, digest in rows]
