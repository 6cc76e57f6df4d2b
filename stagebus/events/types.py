"""Every event type stagebus records, as frozen msgspec structs in one tagged union.

Evolution rules (tested in ``tests/unit/test_events.py``):

- a new field always gets a default, so older payloads still decode;
- a field's type never changes and a tag is never reused;
- a change a default cannot express (a rename, a split) bumps the type's ``VERSION`` and adds an
  upcaster in :mod:`stagebus.events.upcast`; stored payloads are upcast on read, never rewritten.

Stage events name their partition by *partition ref*: ``"{dataset}/{partition}"`` for a
partition-scoped stage task, :data:`RUN_SCOPE` (``"*"``) for a run-level (fan-in) one.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

import msgspec

RUN_SCOPE = "*"


def new_event_id() -> str:
    return uuid.uuid4().hex


def partition_ref(dataset: str, partition: str) -> str:
    return f"{dataset}/{partition}"


def split_partition_ref(ref: str) -> tuple[str, str]:
    dataset, _, partition = ref.partition("/")
    return dataset, partition


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. ``VERSION`` is the schema version the struct's shape has now."""

    VERSION: ClassVar[int] = 1
    event_id: str = msgspec.field(default_factory=new_event_id)

    @property
    def key(self) -> str | None:
        """The idempotency key: the log stores at most one event per key. ``None``: unkeyed."""
        return None

    @property
    def type_name(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


# --- pipeline shape carried by the log, so projections need nothing but the log ----------------


class PlannedStage(msgspec.Struct, frozen=True, kw_only=True):
    """One stage of a run's plan: enough for projections to judge a partition complete."""

    name: str
    after: tuple[str, ...] = ()
    scope: Literal["partition", "run"] = "partition"
    config_hash: str = ""
    config: dict[str, object] = {}  # the stage's config values, so `why` can name what changed


# --- pipeline lifecycle ---------------------------------------------------------------------


class PipelineDefined(Event, frozen=True, kw_only=True, tag="pipeline_defined"):
    pipeline: str
    version: str
    stages: tuple[PlannedStage, ...]


class PipelineStarted(Event, frozen=True, kw_only=True, tag="pipeline_started"):
    pipeline: str


class PipelineStopped(Event, frozen=True, kw_only=True, tag="pipeline_stopped"):
    pipeline: str
    reason: str = ""


class PipelineDeleted(Event, frozen=True, kw_only=True, tag="pipeline_deleted"):
    pipeline: str

    @property
    def key(self) -> str:
        return f"pipeline-deleted/{self.pipeline}"


# --- runs and partitions --------------------------------------------------------------------


class RunOpened(Event, frozen=True, kw_only=True, tag="run_opened"):
    run_id: str
    pipeline: str
    pipeline_version: str = ""
    config_hash: str = ""
    plan: tuple[PlannedStage, ...] = ()
    parent_run_id: str | None = None
    resume_from: str | None = None
    stages: tuple[str, ...] | None = None  # a subset to run; None: every stage of the plan

    @property
    def key(self) -> str:
        return f"run/{self.run_id}"


class PartitionIngested(Event, frozen=True, kw_only=True, tag="partition_ingested"):
    """A producer announces a raw partition for a run. v2 renamed ``sha256`` to ``content_hash``."""

    VERSION: ClassVar[int] = 2
    run_id: str
    dataset: str
    partition: str
    uri: str
    content_hash: str
    size: int
    metadata: dict[str, str] = {}
    schema_version: int = 1  # of the partition's records, not of this event

    @property
    def key(self) -> str:
        return f"ingest/{self.run_id}/{self.dataset}/{self.partition}"

    @property
    def ref(self) -> str:
        return partition_ref(self.dataset, self.partition)


class RunSealed(Event, frozen=True, kw_only=True, tag="run_sealed"):
    """The producer says the run's partition set is complete (run-level stages wait for it)."""

    run_id: str
    partitions: tuple[str, ...]  # partition refs

    @property
    def key(self) -> str:
        return f"seal/{self.run_id}"


class RunAbandoned(Event, frozen=True, kw_only=True, tag="run_abandoned"):
    """An operator says the run will never be finished: its tasks are no longer processed and
    its undecided partitions stop reading as pending. Once per run."""

    run_id: str
    reason: str = ""

    @property
    def key(self) -> str:
        return f"abandon/{self.run_id}"


# --- stage tasks ----------------------------------------------------------------------------


class Artifact(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    path: str  # relative to the artifact root
    sha256: str
    bytes: int
    records: int = 0


class StageMetrics(msgspec.Struct, frozen=True, kw_only=True):
    records_in: int = 0
    records_out: int = 0
    records_rejected: int = 0
    duration_s: float = 0.0


MANIFEST_SCHEMA_VERSION = 1


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    run_id: str
    partition: str
    input_hash: str
    output_hash: str
    config_hash: str
    status: Literal["complete", "reused"]
    started_at: str
    ended_at: str
    attempt: int = 1
    worker: str = ""
    pipeline_version: str = ""
    schema_version: int = MANIFEST_SCHEMA_VERSION
    artifacts: tuple[Artifact, ...] = ()
    metrics: StageMetrics = StageMetrics()
    reused_from: str | None = None


def manifest_key(run_id: str, stage: str, partition: str) -> str:
    return f"manifest/{run_id}/{stage}/{partition}"


TRACEBACK_BYTES = 8192


def failure_key(run_id: str, stage: str, partition: str) -> str:
    return f"failed/{run_id}/{stage}/{partition}"


class StageStarted(Event, frozen=True, kw_only=True, tag="stage_started"):
    run_id: str
    stage: str
    partition: str
    attempt: int
    worker: str
    input_hash: str
    config_hash: str


class ManifestWritten(Event, frozen=True, kw_only=True, tag="manifest_written"):
    """The completion signal of a stage task; appended last, after every artifact is in place."""

    run_id: str
    stage: str
    partition: str
    manifest: Manifest

    @property
    def key(self) -> str:
        return manifest_key(self.run_id, self.stage, self.partition)


class StageFailed(Event, frozen=True, kw_only=True, tag="stage_failed"):
    run_id: str
    stage: str
    partition: str
    attempt: int
    error_type: str
    message: str
    final: bool = False
    # The machine failed, not the data (disk full, I/O error, log unreachable): the attempt is
    # not charged and the task waits to run again. Never together with ``final``.
    infrastructure: bool = False
    traceback: str = ""  # a final failure's traceback, its last TRACEBACK_BYTES

    @property
    def key(self) -> str | None:
        # Only the final failure is unique; each retried attempt may fail on its own.
        return failure_key(self.run_id, self.stage, self.partition) if self.final else None


# --- the HTTP service (stagebus api): keys, API pipelines and batches ----------------------
# Key events carry the SHA-256 of a key, never the key itself.


class ApiKeyCreated(Event, frozen=True, kw_only=True, tag="api_key_created"):
    key_id: str
    owner: str
    key_hash: str  # sha256 hex of the whole secret
    rate: str  # a `limits` rate string, "100/minute"
    prefix: str = ""  # the first characters of the secret, to recognise it in `keys list`

    @property
    def key(self) -> str:
        return f"api-key/{self.key_id}"


class ApiKeyRevoked(Event, frozen=True, kw_only=True, tag="api_key_revoked"):
    key_id: str

    @property
    def key(self) -> str:
        return f"api-key-revoked/{self.key_id}"


class ApiPipelineVersioned(Event, frozen=True, kw_only=True, tag="api_pipeline_versioned"):
    """An API pipeline was created (version 1) or its config replaced (a new version). Keyed by
    version, so of two concurrent updates from the same version one wins and the other learns it."""

    pipeline_id: str
    owner: str
    name: str
    version: int
    config: dict[str, object]

    @property
    def key(self) -> str:
        return f"api-pipeline/{self.pipeline_id}/{self.version}"


class ApiBatchSubmitted(Event, frozen=True, kw_only=True, tag="api_batch_submitted"):
    """A batch of records accepted over HTTP: appended in one atomic write with its run's
    ``RunOpened``, ``PartitionIngested`` and ``RunSealed``. Keyed by the client's
    ``Idempotency-Key`` when it sent one, so a retried submit finds the first batch."""

    batch_id: str
    pipeline_id: str
    owner: str
    run_id: str
    version: int
    record_count: int
    content_hash: str = ""  # sha256 of the batch file: a reused Idempotency-Key must name the same records
    idempotency_key: str = ""

    @property
    def key(self) -> str:
        tail = f"idem/{self.idempotency_key}" if self.idempotency_key else self.batch_id
        return f"api-batch/{self.owner}/{self.pipeline_id}/{tail}"


class ApiPipelineTurn(Event, frozen=True, kw_only=True, tag="api_pipeline_turn"):
    """One turn in an API pipeline's sequence of batch submits and its delete, appended with the
    write it orders. Keyed by turn, so a submit and a delete racing in two API processes claim
    the same free turn and exactly one wins: the loser sees the winner (the delete sees the new
    batch and answers 409; the submit sees the delete and answers 404)."""

    pipeline_id: str
    turn: int  # 1, 2, …: the first turn not yet taken when the writer looked
    action: str  # "submit" | "delete"

    @property
    def key(self) -> str:
        return f"api-pipeline-turn/{self.pipeline_id}/{self.turn}"


AnyEvent = (
    PipelineDefined
    | PipelineStarted
    | PipelineStopped
    | PipelineDeleted
    | RunOpened
    | PartitionIngested
    | RunSealed
    | RunAbandoned
    | StageStarted
    | ManifestWritten
    | StageFailed
    | ApiKeyCreated
    | ApiKeyRevoked
    | ApiPipelineVersioned
    | ApiBatchSubmitted
    | ApiPipelineTurn
)

EVENT_TYPES: dict[str, type[Event]] = {
    t.__struct_config__.tag: t  # type: ignore[misc]
    for t in (
        PipelineDefined,
        PipelineStarted,
        PipelineStopped,
        PipelineDeleted,
        RunOpened,
        PartitionIngested,
        RunSealed,
        RunAbandoned,
        StageStarted,
        ManifestWritten,
        StageFailed,
        ApiKeyCreated,
        ApiKeyRevoked,
        ApiPipelineVersioned,
        ApiBatchSubmitted,
        ApiPipelineTurn,
    )
}
