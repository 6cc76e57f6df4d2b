"""Request and response bodies of ``/api/v1``, as pydantic models (the OpenAPI spec is built from them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid")
SLUG = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PIPELINE_NAME = r"^[^\x00-\x1f\x7f]{1,100}$"


# --- pipeline config ----------------------------------------------------------------------


class BatchSource(BaseModel):
    """Records arrive as batches submitted to ``POST /pipelines/{id}/batches``."""

    model_config = _STRICT
    type: Literal["batch"] = "batch"


class DatasetSource(BaseModel):
    """Each batch is a snapshot of a published dataset: its valid partitions' records at their
    authoritative runs, read by the consumer contract (``stagebus.read``, sha256-verified).
    Submit a batch with an empty body, or ``{"as_of": position}`` for an older snapshot. The
    dataset must be shared with the API (``STAGEBUS_API_DATASETS``) or be the destination of
    one of the caller's own pipelines (``api-<pipeline id>``)."""

    model_config = _STRICT
    type: Literal["dataset"]
    dataset: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f/]+$")
    # The artifact read, STAGE.OUTPUT; null: "deliver.records" of an API pipeline's dataset
    # (api-<pipeline id>), else "normalize.records" (the reference pipeline's records).
    output: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+$")
    # The field of each stored record that is the record (normalize.records keeps it under
    # "record", next to its row "index"); null: the stored record as it is.
    field: str | None = "record"


Source = Annotated[BatchSource | DatasetSource, Field(discriminator="type")]


class ProcessorSpec(BaseModel):
    """One record processor: a reference normalize operation (rename, cast, whitespace, nfc,
    lowercase, drop, require, max_length, default) or a registered custom processor."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=63)
    config: dict[str, Any] = {}


class RecordsDestination(BaseModel):
    """Processed records are kept as the batch run's artifacts (``stagebus manifest show``)."""

    model_config = _STRICT
    type: Literal["records"] = "records"


class ExportDestination(BaseModel):
    """Processed records are also written to ``<home>/exports/<owner>/<folder>/<batch>.jsonl``."""

    model_config = _STRICT
    type: Literal["export"]
    folder: str = Field(pattern=SLUG)


class DatasetDestination(BaseModel):
    """Processed records form the dataset ``api-<pipeline id>`` that any consumer reads through
    the consumer contract: ``stagebus.read("api-<pipeline id>", output="deliver.records")``
    (each row ``{"index", "record"}``), or another API pipeline's dataset source."""

    model_config = _STRICT
    type: Literal["dataset"]


class ServedDestination(BaseModel):
    """Processed records are also switched into the served view (one transaction per batch, never
    by an older batch run): ``stagebus query`` and the inspector search them as dataset
    ``api-<pipeline id>``, one partition per batch."""

    model_config = _STRICT
    type: Literal["served"]


Destination = Annotated[RecordsDestination | ExportDestination | DatasetDestination | ServedDestination,
                        Field(discriminator="type")]


class PipelineConfig(BaseModel):
    model_config = _STRICT
    source: Source = BatchSource()
    processors: list[ProcessorSpec] = Field(default=[], max_length=100)
    destination: Destination = RecordsDestination()


class PipelineCreate(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=PIPELINE_NAME)
    config: PipelineConfig


class PipelineUpdate(BaseModel):
    model_config = _STRICT
    name: str | None = Field(default=None, pattern=PIPELINE_NAME)
    config: PipelineConfig


# --- answers ------------------------------------------------------------------------------


class PipelineCreated(BaseModel):
    id: str
    status: str
    version: int


class PipelineMetrics(BaseModel):
    batches: int
    records_processed: int
    records_failed: int
    error_rate: float  # failed / (processed + failed); 0 when nothing ran
    latency_p50_ms: float | None  # batch submitted -> completed, over completed batches
    latency_p95_ms: float | None
    last_run_at: str | None


class Pipeline(BaseModel):
    id: str
    name: str
    status: Literal["active", "stopped"]
    version: int
    config: dict[str, Any]
    created_at: str
    updated_at: str


class PipelineDetail(Pipeline):
    metrics: PipelineMetrics


class PipelinePage(BaseModel):
    items: list[Pipeline]
    next_cursor: str | None


class BatchAccepted(BaseModel):
    id: str
    status: Literal["pending", "processing", "completed", "failed"]
    record_count: int


class Batch(BaseModel):
    id: str
    pipeline_id: str
    run_id: str  # the stagebus run: `stagebus runs show RUN_ID`, `stagebus why RUN_ID`
    pipeline_version: int
    status: Literal["pending", "processing", "completed", "failed"]
    record_count: int
    processed_count: int
    failed_count: int
    submitted_at: str
    started_at: str | None
    completed_at: str | None
    error: str | None


class BatchPage(BaseModel):
    items: list[Batch]
    next_cursor: str | None


class RecordError(BaseModel):
    record_index: int  # 0-based position of the record in the submitted batch
    stage: str  # the stagebus stage that rejected it
    processor: str | None  # the processor that rejected it (None: not a JSON object)
    error_message: str


class RecordErrorPage(BaseModel):
    items: list[RecordError]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class ErrorDetail(BaseModel):
    loc: list[str]
    msg: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo
