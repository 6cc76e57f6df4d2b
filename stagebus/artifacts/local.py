"""Artifacts on disk (the default backend): content-addressed objects written atomically.

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

The S3 backend (:mod:`stagebus.artifacts.s3`) keeps one of these as its read-through cache.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from stagebus.artifacts import store as _protocol
from stagebus.artifacts.integrity import check_object
from stagebus.artifacts.pending import EMPTY_SHA256, HOST, WRITE_BUFFER, PendingFile, sha256_file
from stagebus.artifacts.store import Collected, grace_cutoff, manifest_json, process_exists
from stagebus.events import Artifact
from stagebus.store.files import fsync_dir

__all__ = [
    "EMPTY_SHA256", "HOST", "WRITE_BUFFER", "ArtifactStore", "Collected", "LocalArtifactStore", "PendingFile",
    "manifest_json", "process_exists", "sha256_file",
]

_log = logging.getLogger("stagebus.artifacts")


class LocalArtifactStore(_protocol.ArtifactStore):
    """Objects in ``root/objects`` on this machine's (or a shared) filesystem."""

    @property
    def location(self) -> str:
        return str(self.root)

    def store_object(self, temp: Path, sha256: str, size: int) -> None:
        final = self.root / self.object_path(sha256)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(temp, final)
                fsync_dir(final.parent)
            except FileExistsError:
                self._repair(temp, final, sha256, size)  # published by someone else meanwhile: check theirs
        else:
            self._repair(temp, final, sha256, size)
        temp.unlink(missing_ok=True)

    def _repair(self, temp: Path, final: Path, sha256: str, size: int) -> None:
        """The object exists already: keep it if it is this content, else replace it atomically by
        the verified temp file (a content-addressed name may only ever hold content matching it)."""
        problem = check_object(final, sha256, size)
        if problem is None:
            return
        os.replace(temp, final)
        fsync_dir(final.parent)
        _log.warning("repaired object %s (%s) with freshly published content", final, problem)

    def holds_intact(self, sha256: str, size: int) -> bool:
        final = self.root / self.object_path(sha256)
        try:
            return final.stat().st_size == size and final.is_file()
        except FileNotFoundError:
            return False

    def path(self, artifact: Artifact) -> Path:
        return self.root / artifact.path

    def problem(self, artifact: Artifact) -> str | None:
        """What is wrong with ``artifact``'s object (missing, size, sha256), or None if it is intact."""
        return check_object(self.path(artifact), artifact.sha256, artifact.bytes)

    def gc(self, referenced: Iterable[str], *, min_age_s: float = 3600.0, dry_run: bool = False) -> Collected:
        return self.collect_local(set(referenced), grace_cutoff(min_age_s), dry_run)


# Code and homes written before the protocol existed construct ``ArtifactStore(root)`` from here.
ArtifactStore = LocalArtifactStore
