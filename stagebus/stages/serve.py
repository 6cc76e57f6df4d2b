"""serve (run-level): switch the served view to this run's partitions, in one transaction.

The served view (``served/served.db``, see :mod:`stagebus.stages.served`) is cumulative: every
partition at the run that last served it, across datasets and runs. This run's index object is
copied beside the database, verified (sha256) while it is copied, and applied from the copy: a
partition is replaced only where its content changed and this run is not older (by the position
of its ``RunOpened``) than the one serving it. A retried or duplicated serve task changes nothing
the first did not, so serve is idempotent; it is never reused, because the switch is its effect.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from stagebus.artifacts.integrity import BLOCK, VerifiedReader
from stagebus.errors import ContractError
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.records import ServedSwitch
from stagebus.stages.served import SERVED_DIR, open_writer, served_path, switch

LEGACY_SNAPSHOTS = "snapshots"  # served/snapshots/<sha>.db and served/CURRENT: the old model
LEGACY_POINTER = "CURRENT"
_COPY_PREFIX = ".index."


# Not reusable: the switch is the point of the stage, and a reused manifest would skip it.
@stage("serve", after=["index"], reads=["index.index"], scope="run", outputs={"switch": ServedSwitch},
       reusable=False)
def serve(ctx: StageContext) -> None:
    if ctx.run_position is None:
        raise ContractError("serve needs the position of its run's RunOpened in the log")
    artifact = ctx.upstream_artifact("index", "index")
    root = ctx.artifact_root
    with ctx.open("index", "index") as index_object:
        copy = verified_copy(root, index_object)
    try:
        conn = open_writer(root)
        try:
            done = switch(conn, copy, run_id=ctx.run_id, run_seq=ctx.run_position, index_sha256=artifact.sha256)
        finally:
            conn.close()
    finally:
        copy.unlink(missing_ok=True)
    ctx.emit("switch", ServedSwitch(
        path=served_path(root).relative_to(root).as_posix(), index_sha256=artifact.sha256,
        partitions=done.replaced + done.unchanged + done.kept_newer, replaced=done.replaced,
        unchanged=done.unchanged, kept_newer=done.kept_newer, records=done.records))


def verified_copy(root: Path, index: VerifiedReader) -> Path:
    """Copy the index object beside the served database; ``index`` raises at its end on a sha256
    mismatch, and the partial copy is removed. A copy, so that nothing can edit the object while
    the switch reads it."""
    directory = root / SERVED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"{_COPY_PREFIX}{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with copy.open("wb") as out:
            while block := index.read(BLOCK):
                out.write(block)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return copy


def collect_served(root: Path, *, min_age_s: float = 3600.0, dry_run: bool = False) -> tuple[int, int]:
    """Delete what the served view no longer needs, if older than ``min_age_s``: snapshots and the
    pointer of the old model (``served/snapshots``, ``served/CURRENT``) and index copies left by
    crashed serve tasks. The served database is never touched. Returns (files, bytes)."""
    served = Path(root) / SERVED_DIR
    candidates = [*sorted((served / LEGACY_SNAPSHOTS).glob("*.db")), served / LEGACY_POINTER,
                  *sorted(served.glob(f"{_COPY_PREFIX}*.tmp"))]
    cutoff = time.time() - min_age_s
    files = freed = 0
    for path in candidates:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_mtime > cutoff:
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        files, freed = files + 1, freed + stat.st_size
    return files, freed
