"""The one place an artifact store is built from settings: ``--artifacts``/``STAGEBUS_ARTIFACTS``
is a directory (default ``<home>/artifacts``) or ``s3://bucket/prefix``."""

from __future__ import annotations

from stagebus.artifacts.local import LocalArtifactStore
from stagebus.artifacts.store import ArtifactStore
from stagebus.settings import Settings


def open_artifacts(settings: Settings, *, create: bool = True) -> ArtifactStore:
    """The store ``settings`` name. ``create=False``: a reader that makes no directory (S3 still
    caches what it downloads for reading under the home's ``artifacts-cache``)."""
    s3 = settings.artifacts_s3
    if s3 is None:
        return LocalArtifactStore(settings.artifacts_root, create=create)
    from stagebus.artifacts.s3 import S3ArtifactStore  # boto3 is the optional extra `stagebus[s3]`

    return S3ArtifactStore(s3, settings.artifacts_root, create=create)
