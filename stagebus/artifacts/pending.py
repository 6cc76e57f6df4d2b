"""A stage task's output while it is written: a temp file, hashed as it goes, that becomes an
immutable object on :meth:`PendingFile.publish` (through its store's
:meth:`~stagebus.artifacts.store.ArtifactStore.store_object`) or vanishes on :meth:`discard`.

Temp files are named ``<host>-<pid>-<uuid>.part`` in the store's ``objects/.tmp``, so a sweep can
tell a dead attempt's leftovers from a live one's.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

from stagebus.events import Artifact

if TYPE_CHECKING:
    from stagebus.artifacts.store import ArtifactStore

HOST = socket.gethostname()
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Each flush is a system call that gives up the GIL, and taking it back waits for the other
# worker thread's switch interval (5 ms) when that one is busy: few, large writes.
WRITE_BUFFER = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class PendingFile:
    """A temp file that becomes an immutable object on :meth:`publish`, or vanishes on :meth:`discard`."""

    def __init__(self, store: ArtifactStore, name: str) -> None:
        self.name = name
        self._path: Path | None = None  # named on first use: most outputs of most tasks stay empty
        self._store = store
        self._hash = hashlib.sha256()
        self._fh: IO[bytes] | None = None
        self._buffer = bytearray()
        self.kept = False  # an item journal's output: kept for the next attempt when this one fails
        self.bytes = 0
        self.records = 0

    @property
    def path(self) -> Path:
        """The temp file (a stage writing a file output opens it itself)."""
        if self._path is None:
            self._path = self._store.tmp_dir / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}.part"
        return self._path

    @path.setter
    def path(self, value: Path) -> None:
        self._path = value

    def write(self, data: bytes) -> None:
        # Records are small: gathered here, hashed and written in large pieces. The temp file
        # exists from the first record on, so a crashed attempt leaves it for the sweep to find.
        if self._fh is None:
            self._fh = self.path.open("wb", buffering=0)
        self._buffer += data
        self.bytes += len(data)
        if len(self._buffer) >= WRITE_BUFFER:
            self._spill()

    def _spill(self) -> None:
        if self._fh is None:
            self._fh = self.path.open("wb", buffering=0)
        if self._buffer:
            self._hash.update(self._buffer)
            self._fh.write(self._buffer)
            self._buffer.clear()

    def resume_at(self, target: Path, size: int, records: int, *, fresh: bool) -> None:
        """Write to ``target`` from now on, a file that outlives a failed attempt (an item
        journal's output). ``fresh``: move what was written so far there. Else ``target`` holds
        a crashed attempt's output: cut it back to ``size`` bytes of ``records`` records, hash
        those again and append after them (what this attempt wrote before is already in it)."""
        if self.path == target:
            return
        if fresh:
            if self._fh is not None:
                self._fh.close()
                os.replace(self.path, target)
                self._fh = target.open("ab", buffering=0)
            else:
                target.unlink(missing_ok=True)
        elif size == 0 and not target.exists():
            self.discard()  # nothing of this output was committed: start it afresh
            self._hash, self.bytes, self.records = hashlib.sha256(), 0, 0
        else:
            self.discard()
            with target.open("r+b") as fh:
                fh.truncate(size)
            self._hash = hashlib.sha256()
            with target.open("rb") as fh:
                while block := fh.read(1 << 20):
                    self._hash.update(block)
            self.bytes, self.records = size, records
            self._fh = target.open("ab", buffering=0)
        self.path = target
        self.kept = True

    def sync(self) -> tuple[int, int]:
        """Make what was written durable (an item journal's commit); returns (bytes, records)."""
        if self._fh is None and not self._buffer:
            return 0, 0  # nothing written yet: no file to make (an empty output is published as such)
        self._spill()
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        return self.bytes, self.records

    def _close_written(self) -> bool:
        """Write out and fsync what was written through :meth:`write`; False when nothing was."""
        if self._fh is None and not self._buffer:
            return False
        self._spill()
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        return True

    def publish(self) -> Artifact:
        if self._close_written():
            digest = self._hash.hexdigest()
        elif self._path is None:
            return self._publish_empty()  # never written, never even named
        else:
            try:  # written by the stage through ``path`` directly: hash what is on disk
                with self.path.open("rb") as fh:
                    os.fsync(fh.fileno())
            except FileNotFoundError:
                return self._publish_empty()  # an output with no records is still an artifact
            digest = sha256_file(self.path)
            self.bytes = self.path.stat().st_size
        rel = self._store.object_path(digest)
        self._store.store_object(self.path, digest, self.bytes)
        return Artifact(name=self.name, path=rel, sha256=digest, bytes=self.bytes, records=self.records)

    def _publish_empty(self) -> Artifact:
        # Most tasks leave some output empty (rejects above all): the empty object is shared, so
        # it is created once, not written, hashed and stored per task.
        if not self._store.holds_intact(EMPTY_SHA256, 0):
            self.path.touch()
            self._store.store_object(self.path, EMPTY_SHA256, 0)
        return Artifact(name=self.name, path=self._store.object_path(EMPTY_SHA256), sha256=EMPTY_SHA256,
                        bytes=0, records=0)

    def keep_at(self, target: Path) -> Artifact:
        """Move what was written to ``target`` (outside the object store, e.g. a task's work
        directory) instead of publishing it; the returned artifact's path is relative to the root."""
        self._close_written()
        if not self.path.exists():
            self.path.touch()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        return Artifact(name=self.name, path=target.relative_to(self._store.root).as_posix(),
                        sha256=self._hash.hexdigest(), bytes=self.bytes, records=self.records)

    def discard(self) -> None:
        self._buffer.clear()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if not self.kept and self._path is not None:
            self._path.unlink(missing_ok=True)
