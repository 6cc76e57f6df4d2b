"""serve (run-level): publish the run's search index as the current snapshot.

Layout under the artifact root::

    served/snapshots/<sha256>.db   immutable snapshots (verified copies of the index artifact)
    served/CURRENT                 JSON pointer to the snapshot readers should open

The pointer is replaced atomically (temp file, fsync, ``os.replace``, fsync of the directory):
a reader sees the old snapshot or the new one, never a half-published index. Snapshots are
never modified and stay until an explicit gc, so a reader holding an old pointer keeps working.
Publishing is idempotent, so a retried or duplicated serve task does no harm. Snapshots are
copies (twice the index's disk space) so that the object and the served file cannot be changed
together; ``query`` checks a snapshot's sha256 against the pointer before it opens it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import msgspec

from stagebus.artifacts.integrity import BLOCK, VerifiedReader, check_object
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
    with ctx.open("index", "index") as index_object:
        snapshot = publish_snapshot(ctx.artifact_root, index_object, artifact.sha256, artifact.bytes)
    switch_pointer(ctx.artifact_root, Pointer(snapshot=snapshot, sha256=artifact.sha256,
                                              records=summary["records"], run_id=ctx.run_id))
    ctx.emit("snapshot", Snapshot(path=snapshot, sha256=artifact.sha256, bytes=artifact.bytes,
                                  records=summary["records"]))


def publish_snapshot(root: Path, index: VerifiedReader, sha256: str, size: int) -> str:
    """Copy the index to ``served/snapshots/<sha256>.db``; return that path relative to ``root``.

    A copy, never a hard link: editing the index object must not edit what readers are served.
    The copy is verified as it is made (``index`` raises at its end on a mismatch) and an existing
    snapshot of that name whose bytes no longer match is replaced.
    """
    directory = root / SERVED_DIR / SNAPSHOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{sha256}.db"
    if final.exists() and check_object(final, sha256, size) is None:
        return final.relative_to(root).as_posix()
    tmp = directory / f".{sha256}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with tmp.open("wb") as out:
            while block := index.read(BLOCK):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        # Same name means same content, so a concurrent publisher winning the rename is harmless.
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
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
