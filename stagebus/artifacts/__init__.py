"""Artifact storage: content-addressed objects written atomically, never overwritten, and the
browsable per-run view. The local filesystem backend is in :mod:`stagebus.artifacts.local`."""

from stagebus.artifacts.local import ArtifactStore, Collected, PendingFile, sha256_file

__all__ = ["ArtifactStore", "Collected", "PendingFile", "sha256_file"]
