"""serve (run-level): publish the run's search index as the current snapshot.

Layout under the artifact root::

    served/snapshots/<sha256>.db   immutable snapshots (hard links to the index artifact)
    served/CURRENT                 JSON pointer to the snapshot readers should open

The pointer is replaced atomically (temp file, fsync, ``os.replace``, fsync of the directory):
a reader sees the old snapshot or the new one, never a half-published index. Snapshots are
never modified and stay until an explicit gc, so a reader holding an old pointer keeps working.
Publishing is idempotent, so a retried or duplicated serve task does no harm.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import msgspec

from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.records import Snapshot
from stagebus.store.files import fsync_dir

SERVED_DIR = "served"
SNAPSHOTS_DIR = "snapshots"
POINTER = "CURRENT"
_JSON = msgspec.json.Encoder(order="deterministic")


class Pointer(msgspec.Struct, frozen=True, kw_only=True):
    """What ``served/CURRENT`` holds."""

    snapshot: str  # relative to the artifact root
    sha256: str
    records: int
    run_id: str


# Not reusable: the pointer switch is the point of the stage, and a reused manifest would skip it.
@stage("serve", after=["index"], reads=["index.index", "index.summary"], scope="run", outputs={"snapshot": Snapshot},
       reusable=False)
def serve(ctx: StageContext) -> None:
    artifact = ctx.upstream_artifact("index", "index")
    (summary,) = list(ctx.read("index", "summary"))
    snapshot = publish_snapshot(ctx.artifact_root, ctx.artifact_path("index", "index"), artifact.sha256)
    switch_pointer(ctx.artifact_root, Pointer(snapshot=snapshot, sha256=artifact.sha256,
                                              records=summary["records"], run_id=ctx.run_id))
    ctx.emit("snapshot", Snapshot(path=snapshot, sha256=artifact.sha256, bytes=artifact.bytes,
                                  records=summary["records"]))


def publish_snapshot(root: Path, index_file: Path, sha256: str) -> str:
    """Place the index at ``served/snapshots/<sha256>.db``; return that path relative to ``root``."""
    directory = root / SERVED_DIR / SNAPSHOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{sha256}.db"
    if not final.exists():
        tmp = directory / f".{sha256}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            os.link(index_file, tmp)
        except OSError:
            shutil.copyfile(index_file, tmp)  # another filesystem, or no hard links there
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
        # Same name means same content, so a concurrent publisher winning the rename is harmless.
        os.replace(tmp, final)
        tmp.unlink(missing_ok=True)  # rename is a no-op when both names are links to one file
        fsync_dir(directory)
    return final.relative_to(root).as_posix()


def switch_pointer(root: Path, pointer: Pointer) -> None:
    directory = root / SERVED_DIR
    tmp = directory / f".{POINTER}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    with tmp.open("wb") as fh:
        fh.write(_JSON.encode(pointer) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / POINTER)
    fsync_dir(directory)


def read_pointer(root: Path) -> Pointer | None:
    path = Path(root) / SERVED_DIR / POINTER
    try:
        return msgspec.json.decode(path.read_bytes(), type=Pointer)
    except FileNotFoundError:
        return None


def collect_snapshots(root: Path, *, min_age_s: float = 3600.0, dry_run: bool = False) -> tuple[int, int]:
    """Delete served snapshots other than the one ``CURRENT`` names, if older than ``min_age_s``
    (a reader may still have an older one open). Returns (files, bytes)."""
    pointer = read_pointer(root)
    current = (Path(root) / pointer.snapshot).name if pointer else None
    cutoff = time.time() - min_age_s
    files = freed = 0
    for snapshot in sorted((Path(root) / SERVED_DIR / SNAPSHOTS_DIR).glob("*.db")):
        stat = snapshot.stat()
        if snapshot.name == current or stat.st_mtime > cutoff:
            continue
        if not dry_run:
            snapshot.unlink()
        files, freed = files + 1, freed + stat.st_size
    return files, freed
