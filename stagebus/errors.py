"""The one error hierarchy of stagebus.

Backends translate their own exceptions (sqlite3, redis, msgspec) into these, so callers and
the CLI catch one family and print one line. This module imports nothing of ours: every layer,
``events`` included, may raise these.
"""

from __future__ import annotations


class StagebusError(Exception):
    """Base of every error stagebus raises on purpose. ``str(err)`` is a one-line message."""


class InvalidInput(StagebusError, ValueError):
    """Input from a user or producer was refused before anything was stored."""


class EventDecodeError(StagebusError):
    """Stored or received bytes are not a known event. Names the position when there is one."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"cannot decode event{where}: {message}")


class StoreError(StagebusError):
    """The event log or projection store failed in a way a retry did not fix."""


class StoreUnavailable(StoreError):
    """The store could not be reached or stayed busy after the retry budget was spent."""


class ArtifactStoreUnavailable(StoreUnavailable):
    """The artifact object store (S3) could not be reached, or kept throttling, after the retry
    budget was spent. An infrastructure fault: a stage task waits, uncharged, until it clears."""


class ReadOnlyStore(StoreError):
    """A write was attempted through a store opened read-only."""


class WarehouseError(StagebusError):
    """A warehouse load could not reach its target, or the target refused it (a table whose
    columns do not match, a connection lost mid-load). Its message never holds a password."""


class ContractError(StagebusError):
    """A stage, pipeline or output broke its declared contract. Never retried."""


class GateClosed(StagebusError):
    """A stage task was asked to run before its upstream manifests exist."""


class PipelineError(InvalidInput):
    """A pipeline lifecycle rule refused the request (stopped, deleted, busy)."""


class PermanentStageError(StagebusError):
    """A stage says retrying cannot help (the input itself is bad). Fails the task at once."""


class ArtifactCorrupted(PermanentStageError):
    """Integrity error: an artifact's object is missing or its bytes do not match the sha256 its
    manifest recorded. Retrying the reader cannot help: the producing stage must run again."""


class QualityPolicyViolated(PermanentStageError):
    """A task rejected more records than its stage's quality policy allows (or kept too few):
    final, its outputs discarded, nothing downstream runs for the partition."""
