"""Artifact storage: content-addressed objects written atomically, never overwritten, and the
browsable per-run view. The protocol is :class:`ArtifactStore` (:mod:`stagebus.artifacts.store`);
backends: the local filesystem (:mod:`stagebus.artifacts.local`, the default) and S3-compatible
object storage (:mod:`stagebus.artifacts.s3`); :func:`open_artifacts` picks one from settings."""

from stagebus.artifacts.local import LocalArtifactStore
from stagebus.artifacts.location import open_artifacts
from stagebus.artifacts.pending import PendingFile, sha256_file
from stagebus.artifacts.store import ArtifactStore, Collected

__all__ = ["ArtifactStore", "Collected", "LocalArtifactStore", "PendingFile", "open_artifacts", "sha256_file"]
