"""Artifacts on disk: content-addressed objects written atomically, plus a browsable run view.

Layout under the artifact root::

    objects/ab/<sha256>                        immutable content, never overwritten
    objects/.tmp/<host>-<pid>-<uuid>.part      in-flight writes (same filesystem: rename is atomic)
    objects/.tmp/<host>-<pid>-<uuid>.view      in-flight views (one temp directory: a sweep never walks runs/)
    runs/<run_id>/<stage>/<dataset>/<partition>/manifest.json   a view, written from the event
    work/<run_id>/<stage>/<dataset>/<partition>/items.jsonl     per-item progress of long stages

Names in those paths are encoded by :func:`stagebus.artifacts.names.task_dir` (injective, so no two
tasks share a directory; ``_run`` stands for a run-level task's dataset and partition).

A writer fsyncs its temp file, then hard-links it to its final name: ``link`` fails rather than
overwrite, so a second writer of the same content is a no-op. An existing object is checked
first: one whose bytes no longer match its name (tampered, bit rot) is replaced by the verified
temp file, so a correct recomputation repairs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, NamedTuple

import msgspec

from stagebus.artifacts.integrity import check_object
from stagebus.artifacts.names import task_dir
from stagebus.events import Artifact, Manifest
from stagebus.store.files import fsync_dir

_log = logging.getLogger("stagebus.artifacts")
HOST = socket.gethostname()
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Each flush is a system call that gives up the GIL, and taking it back waits for the other
# worker thread's switch interval (5 ms) when that one is busy: few, large writes.
WRITE_BUFFER = 1 << 20
_MANIFEST_JSON = msgspec.json.Encoder(order="deterministic")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_json(manifest: Manifest) -> bytes:
    """The bytes of a browsable ``manifest.json`` view of ``manifest``."""
    return _MANIFEST_JSON.encode(manifest)


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
        self._link(self._store.root / rel, digest)
        return Artifact(name=self.name, path=rel, sha256=digest, bytes=self.bytes, records=self.records)

    def _publish_empty(self) -> Artifact:
        # Most tasks leave some output empty (rejects above all): the empty object is shared, so
        # it is created once, not written, hashed and linked per task.
        rel = self._store.object_path(EMPTY_SHA256)
        final = self._store.root / rel
        try:
            intact = final.stat().st_size == 0 and final.is_file()
        except FileNotFoundError:
            intact = False
        if not intact:
            self.path.touch()
            self._link(final, EMPTY_SHA256)
        return Artifact(name=self.name, path=rel, sha256=EMPTY_SHA256, bytes=0, records=0)

    def _link(self, final: Path, digest: str) -> None:
        """Make the temp file the object ``final`` unless that object exists intact already."""
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.path, final)
                fsync_dir(final.parent)
            except FileExistsError:
                self._repair(final, digest)  # published by someone else meanwhile: check theirs
        else:
            self._repair(final, digest)
        self.path.unlink(missing_ok=True)

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

    def _repair(self, final: Path, digest: str) -> None:
        """The object exists already: keep it if it is this content, else replace it atomically by
        our verified temp file (a content-addressed name may only ever hold content matching it)."""
        problem = check_object(final, digest, self.bytes)
        if problem is None:
            return
        os.replace(self.path, final)
        fsync_dir(final.parent)
        _log.warning("repaired object %s (%s) with freshly published content", final, problem)

    def discard(self) -> None:
        self._buffer.clear()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if not self.kept and self._path is not None:
            self._path.unlink(missing_ok=True)


class ArtifactStore:
    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "objects" / ".tmp"
        if create:  # a read-only reader (``artifacts verify``) changes no file
            self.tmp_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def object_path(sha256: str) -> str:
        return f"objects/{sha256[:2]}/{sha256}"

    def pending(self, name: str) -> PendingFile:
        return PendingFile(self, name)

    def path(self, artifact: Artifact) -> Path:
        return self.root / artifact.path

    def verify(self, artifact: Artifact) -> bool:
        return self.problem(artifact) is None

    def problem(self, artifact: Artifact) -> str | None:
        """What is wrong with ``artifact``'s object (missing, size, sha256), or None if it is intact."""
        return check_object(self.path(artifact), artifact.sha256, artifact.bytes)

    def manifest_path(self, run_id: str, stage: str, partition: str) -> Path:
        return self.root / "runs" / task_dir(run_id, stage, partition) / "manifest.json"

    def work_dir(self, run_id: str, stage: str, partition: str) -> Path:
        return self.root / "work" / task_dir(run_id, stage, partition)

    def materialize(self, manifest: Manifest) -> Path:
        """Write the browsable ``manifest.json`` from the event, atomically. Idempotent."""
        target = self.manifest_path(manifest.run_id, manifest.stage, manifest.partition)
        data = manifest_json(manifest)
        try:
            if target.read_bytes() == data:
                return target
        except (FileNotFoundError, NotADirectoryError):
            pass
        self._write_view(target, data, set())
        return target

    def materialize_many(self, manifests: Iterable[Manifest]) -> int:
        """Write the views of manifests just appended (none can have one yet), in one pass:
        each directory made once. Returns how many were written."""
        made: set[Path] = set()
        written = 0
        for manifest in manifests:
            target = self.manifest_path(manifest.run_id, manifest.stage, manifest.partition)
            self._write_view(target, manifest_json(manifest), made)
            written += 1
        return written

    def _write_view(self, target: Path, data: bytes, made: set[Path]) -> None:
        # No fsync: manifest.json is a view of the ManifestWritten event, not a record. A copy
        # lost in a crash is written again from the log (the executor's duplicate path,
        # ``artifacts verify --repair``).
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        tmp = self.tmp_dir / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}.view"
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def sweep(self) -> int:
        """Remove temp files of attempts that died (their process on this host is gone). Looks
        only in the two temp directories: its cost follows work in flight, never history."""
        removed = 0
        for part in [*self.tmp_dir.glob("*.part"), *self.tmp_dir.glob("*.view")]:
            host, pid_text, _ = part.name.rsplit(".", 1)[0].rsplit("-", 2)
            if host != HOST:
                continue  # another machine's attempt: only that machine can judge it
            if pid_text.isdigit() and _alive(int(pid_text)):
                continue
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    def leftovers(self) -> list[Path]:
        return list(self.tmp_dir.glob("*.part"))

    def gc(self, referenced: Iterable[str], *, min_age_s: float = 3600.0, dry_run: bool = False) -> Collected:
        """Delete objects no manifest references. Only ever called explicitly.

        An object younger than ``min_age_s`` is kept even when unreferenced: a running task
        publishes its objects before it appends the manifest that references them.
        """
        keep = set(referenced)
        cutoff = time.time() - min_age_s
        files = freed = 0
        for obj in sorted((self.root / "objects").glob("??/*")):
            stat = obj.stat()
            if obj.relative_to(self.root).as_posix() in keep or stat.st_mtime > cutoff:
                continue
            if not dry_run:
                obj.unlink()
            files, freed = files + 1, freed + stat.st_size
        return Collected(files, freed)


class Collected(NamedTuple):
    files: int
    bytes: int


def process_exists(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int) -> bool:
    return pid == os.getpid() or process_exists(pid)
