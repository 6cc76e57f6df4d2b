"""The ``ArtifactStore`` protocol: where a stage task's outputs become immutable objects.

Every backend keeps the same rules (checked by ``tests/contract/test_artifact_store_contract.py``):

- **content-addressed**: an object's name is ``objects/<sha256[:2]>/<sha256>`` of its bytes, so
  :attr:`Artifact.path <stagebus.events.Artifact>` is the same whichever backend holds it;
- **never overwritten**: a name, once stored, keeps its content; a second writer of the same
  content is a no-op that succeeds. The one exception is repair: an object whose bytes no longer
  match its name (tampered, bit rot) may be replaced by a writer holding verified content;
- **nothing partial under a final name**: writes go to a temp file (or an upload the backend
  does not show) first; a reader never sees a half-written object under its name;
- **objects before manifests**: :meth:`PendingFile.publish` returns once the object is stored
  durably, and only then does the executor append the ``ManifestWritten`` that references it;
- **verified reads**: a mismatch between bytes and the recorded sha256 is
  :class:`~stagebus.errors.ArtifactCorrupted`, never silently used.

Besides objects, every store has a **local working area** under :attr:`ArtifactStore.root`: temp
files of in-flight writes, the browsable ``runs/…/manifest.json`` views, the ``work/…`` item
journals of long stages, and the served view. Those are per machine by design (views are rebuilt
from the log, journals only help a retry on the same machine), so they are implemented here once.
"""

from __future__ import annotations

import abc
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import msgspec

from stagebus.artifacts.names import task_dir
from stagebus.artifacts.pending import HOST, PendingFile
from stagebus.events import Artifact, Manifest

_MANIFEST_JSON = msgspec.json.Encoder(order="deterministic")


def manifest_json(manifest: Manifest) -> bytes:
    """The bytes of a browsable ``manifest.json`` view of ``manifest``."""
    return _MANIFEST_JSON.encode(manifest)


class Collected(NamedTuple):
    files: int
    bytes: int


class ArtifactStore(abc.ABC):
    """Immutable, content-addressed objects plus this machine's working area under ``root``."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "objects" / ".tmp"
        if create:  # a read-only reader (``artifacts verify``) changes no file
            self.tmp_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def object_path(sha256: str) -> str:
        return f"objects/{sha256[:2]}/{sha256}"

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the objects live, fit for messages (never a credential)."""

    # --- objects ----------------------------------------------------------------------------

    def pending(self, name: str) -> PendingFile:
        """A temp file for output ``name``; it becomes an object on :meth:`PendingFile.publish`."""
        return PendingFile(self, name)

    @abc.abstractmethod
    def store_object(self, temp: Path, sha256: str, size: int) -> None:
        """Make the verified temp file ``temp`` (``size`` bytes hashing to ``sha256``) the object
        :meth:`object_path` names, and remove ``temp``. Idempotent: when the object exists intact
        already (another writer, an earlier attempt) this is a no-op that succeeds; when it exists
        but is corrupt, it is replaced atomically. Returns only once the object is durable.
        Raises ``OSError`` for local I/O faults and
        :class:`~stagebus.errors.ArtifactStoreUnavailable` when a remote store stays unreachable."""

    @abc.abstractmethod
    def holds_intact(self, sha256: str, size: int) -> bool:
        """A cheap check that the object exists with ``size`` bytes (no hashing): lets writers of
        the shared empty object skip writing it. Raises as :meth:`store_object` does."""

    @abc.abstractmethod
    def path(self, artifact: Artifact) -> Path:
        """A local file holding ``artifact``'s object, for readers (which verify its sha256 as
        they read, :class:`~stagebus.artifacts.integrity.VerifiedReader`). A remote backend
        downloads it first (streaming, verified, atomically renamed into a read-through cache).
        Raises :class:`~stagebus.errors.ArtifactCorrupted` when a download is missing or does not
        match the recorded sha256 or size; locally, a missing object's path is returned as it is
        and the reader reports it missing. Never returns a file it knows to be corrupt."""

    @abc.abstractmethod
    def problem(self, artifact: Artifact) -> str | None:
        """What is wrong with ``artifact``'s stored object (missing, size, sha256), or None if it
        is intact. Reads the whole object: this is ``artifacts verify``'s check."""

    def verify(self, artifact: Artifact) -> bool:
        return self.problem(artifact) is None

    @abc.abstractmethod
    def gc(self, referenced: Iterable[str], *, min_age_s: float = 3600.0, dry_run: bool = False) -> Collected:
        """Delete objects whose path is not in ``referenced``. Only ever called explicitly.

        An object younger than ``min_age_s`` is kept even when unreferenced: a running task
        publishes its objects before it appends the manifest that references them."""

    # --- the local working area ---------------------------------------------------------------

    def manifest_path(self, run_id: str, stage: str, partition: str) -> Path:
        return self.root / "runs" / task_dir(run_id, stage, partition) / "manifest.json"

    def work_dir(self, run_id: str, stage: str, partition: str) -> Path:
        return self.root / "work" / task_dir(run_id, stage, partition)

    def materialize(self, manifest: Manifest) -> Path:
        """Write the browsable ``manifest.json`` from the event, atomically. Idempotent."""
        self.materialize_many([manifest])
        return self.manifest_path(manifest.run_id, manifest.stage, manifest.partition)

    def materialize_many(self, manifests: Iterable[Manifest]) -> int:
        """Write the views of ``manifests`` that are missing or differ, in one pass (each
        directory made once). Idempotent. Returns how many were written."""
        made: set[Path] = set()
        written = 0
        for manifest in manifests:
            target = self.manifest_path(manifest.run_id, manifest.stage, manifest.partition)
            data = manifest_json(manifest)
            try:
                if target.read_bytes() == data:
                    continue
            except (FileNotFoundError, NotADirectoryError):
                pass
            self._write_view(target, data, made)
            written += 1
        return written

    def _write_view(self, target: Path, data: bytes, made: set[Path]) -> None:
        # No fsync: manifest.json is a view of the ManifestWritten event, not a record. One lost
        # in a crash is written again from the log (``artifacts views``, ``verify --repair``).
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        tmp = self.tmp_dir / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}.view"
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:  # opened read-only, or a cache someone removed: views are rebuilt
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
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

    def collect_local(self, keep: set[str], cutoff: float, dry_run: bool) -> Collected:
        """Delete unreferenced files under ``root/objects`` last modified before ``cutoff``."""
        files = freed = 0
        for obj in sorted((self.root / "objects").glob("??/*")):
            stat = obj.stat()
            if obj.relative_to(self.root).as_posix() in keep or stat.st_mtime > cutoff:
                continue
            if not dry_run:
                obj.unlink()
            files, freed = files + 1, freed + stat.st_size
        return Collected(files, freed)


def grace_cutoff(min_age_s: float) -> float:
    """The wall-clock time before which an unreferenced object may be collected."""
    return time.time() - min_age_s


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
