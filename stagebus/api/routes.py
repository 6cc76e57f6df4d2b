"""The ``/api/v1`` routes: thin — auth and rate limit by dependency, work in the service,
answers as response models. Every path is scoped to the caller's owner."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from stagebus.api import schemas
from stagebus.api.auth import Caller, rate_limited
from stagebus.api.body import read_records, snapshot_position
from stagebus.api.errors import CODES, ApiError
from stagebus.api.service import PipelineView, Service
from stagebus.projections.api_resources import ApiBatchRow

BatchStatus = Literal["pending", "processing", "completed", "failed"]
PipelineStatus = Literal["active", "stopped"]


def _documented_errors() -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for code, (status, meaning) in CODES.items():
        by_status.setdefault(status, []).append(f"`{code}`: {meaning}")
    return {status: {"model": schemas.ErrorBody, "description": "; ".join(lines)}
            for status, lines in sorted(by_status.items())}


ERRORS = _documented_errors()
router = APIRouter(prefix="/api/v1", responses=ERRORS)
Authed = Annotated[Caller, Depends(rate_limited)]
Limit = Annotated[int | None, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")]


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def page_size(request: Request, limit: int | None) -> int:
    return limit or request.app.state.api_settings.page_limit  # type: ignore[no-any-return]


def pipeline_model(view: PipelineView, cls: type[schemas.Pipeline] = schemas.Pipeline, **extra: Any) -> Any:
    row = view.row
    return cls(id=row.pipeline_id, name=row.name, status=view.status, version=row.version,  # type: ignore[arg-type]
               config=row.config, created_at=row.created_at, updated_at=row.updated_at, **extra)


def batch_model(row: ApiBatchRow) -> schemas.Batch:
    return schemas.Batch(id=row.batch_id, pipeline_id=row.pipeline_id, run_id=row.run_id,
                         pipeline_version=row.version, status=row.status,  # type: ignore[arg-type]
                         record_count=row.record_count, processed_count=row.processed_count,
                         failed_count=row.failed_count, submitted_at=row.submitted_at, started_at=row.started_at,
                         completed_at=row.completed_at, error=row.error or None)


_CREATE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/PipelineCreate"}}}}}
_UPDATE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/PipelineUpdate"}}}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "minItems": 1, "items": {}}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON record a line"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "a JSON array or NDJSON file"}}}},
}}}


@router.get("/health", response_model=schemas.Health, tags=["health"], responses={500: ERRORS[500]})
def health() -> schemas.Health:
    """Liveness, without a key."""
    return schemas.Health(status="ok")


# --- pipelines ----------------------------------------------------------------------------


@router.post("/pipelines", status_code=201, response_model=schemas.PipelineCreated, tags=["pipelines"],
             openapi_extra=_CREATE_BODY)
async def create_pipeline(request: Request, caller: Authed) -> schemas.PipelineCreated:
    """Create a pipeline from ``{name, config: {source, processors, destination}}``; an invalid
    config answers 400 with every problem in ``details``."""
    body = await _json_body(request)
    view = await run_in_threadpool(service(request).create_pipeline, caller.owner, body)
    return schemas.PipelineCreated(id=view.row.pipeline_id, status=view.status, version=view.row.version)


@router.get("/pipelines", response_model=schemas.PipelinePage, tags=["pipelines"])
def list_pipelines(request: Request, caller: Authed, limit: Limit = None, cursor: Cursor = None,
                   status: PipelineStatus | None = None) -> schemas.PipelinePage:
    """The caller's pipelines, oldest first, a page at a time."""
    views, next_cursor = service(request).pipelines_page(caller.owner, limit=page_size(request, limit),
                                                         cursor=cursor, status=status)
    return schemas.PipelinePage(items=[pipeline_model(v) for v in views], next_cursor=next_cursor)


@router.get("/pipelines/{pipeline_id}", response_model=schemas.PipelineDetail, tags=["pipelines"])
def get_pipeline(request: Request, caller: Authed, pipeline_id: str) -> schemas.PipelineDetail:
    """Details, status and metrics: records processed and failed, error rate, batch latency
    (submitted to completed) p50/p95, last run time."""
    svc = service(request)
    view = svc.pipeline(caller.owner, pipeline_id)
    return pipeline_model(view, schemas.PipelineDetail,  # type: ignore[no-any-return]
                          metrics=schemas.PipelineMetrics(**svc.metrics(pipeline_id)))


@router.put("/pipelines/{pipeline_id}", response_model=schemas.Pipeline, tags=["pipelines"],
            openapi_extra=_UPDATE_BODY)
async def update_pipeline(request: Request, caller: Authed, pipeline_id: str) -> schemas.Pipeline:
    """Replace the config (validated): a new version. Batches already submitted keep theirs."""
    body = await _json_body(request)
    view = await run_in_threadpool(service(request).update_pipeline, caller.owner, pipeline_id, body)
    return pipeline_model(view)  # type: ignore[no-any-return]


@router.delete("/pipelines/{pipeline_id}", status_code=204, response_class=Response, tags=["pipelines"])
def delete_pipeline(request: Request, caller: Authed, pipeline_id: str) -> Response:
    """Delete; refused with 409 ``PIPELINE_HAS_ACTIVE_BATCHES`` while a batch is pending or processing."""
    service(request).delete_pipeline(caller.owner, pipeline_id)
    return Response(status_code=204)


@router.post("/pipelines/{pipeline_id}/start", response_model=schemas.Pipeline, tags=["pipelines"])
def start_pipeline(request: Request, caller: Authed, pipeline_id: str) -> schemas.Pipeline:
    """Process batches again, the held ones first."""
    return pipeline_model(service(request).set_running(caller.owner, pipeline_id, True))  # type: ignore[no-any-return]


@router.post("/pipelines/{pipeline_id}/stop", response_model=schemas.Pipeline, tags=["pipelines"])
def stop_pipeline(request: Request, caller: Authed, pipeline_id: str) -> schemas.Pipeline:
    """Hold batches: a stopped pipeline still accepts them and processes them once started."""
    return pipeline_model(service(request).set_running(caller.owner, pipeline_id, False))  # type: ignore[no-any-return]


# --- batches ------------------------------------------------------------------------------


@router.post("/pipelines/{pipeline_id}/batches", status_code=202, response_model=schemas.BatchAccepted,
             tags=["batches"], openapi_extra=_BATCH_BODY)
async def submit_batch(request: Request, response: Response, caller: Authed, pipeline_id: str,
                       idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                                     pattern=r"^[!-~]+$")] = None,
                       ) -> schemas.BatchAccepted:
    """Submit records: a JSON array, NDJSON, or a multipart ``file``. With an ``Idempotency-Key``
    a retried submit answers with the first batch (header ``Idempotent-Replayed: true``)."""
    svc = service(request)
    view = await run_in_threadpool(svc.pipeline, caller.owner, pipeline_id)  # 404 before reading a body
    limit = request.app.state.api_settings.max_batch_records
    if view.row.config.get("source", {}).get("type") == "dataset":
        as_of = snapshot_position(await request.body())
        records = await run_in_threadpool(svc.snapshot_records, view, as_of, limit)
    else:
        records = await read_records(request, limit)
    row, created = await run_in_threadpool(svc.submit_batch, caller.owner, pipeline_id, records, idempotency_key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return schemas.BatchAccepted(id=row.batch_id, status=row.status, record_count=row.record_count)  # type: ignore[arg-type]


@router.get("/pipelines/{pipeline_id}/batches", response_model=schemas.BatchPage, tags=["batches"])
def list_batches(request: Request, caller: Authed, pipeline_id: str, limit: Limit = None, cursor: Cursor = None,
                 status: BatchStatus | None = None) -> schemas.BatchPage:
    """The pipeline's batches, oldest first, a page at a time."""
    rows, next_cursor = service(request).batches_page(caller.owner, pipeline_id, limit=page_size(request, limit),
                                                      cursor=cursor, status=status)
    return schemas.BatchPage(items=[batch_model(r) for r in rows], next_cursor=next_cursor)


@router.get("/pipelines/{pipeline_id}/batches/{batch_id}", response_model=schemas.Batch, tags=["batches"])
def get_batch(request: Request, caller: Authed, pipeline_id: str, batch_id: str) -> schemas.Batch:
    """Status (pending, processing, completed, failed), counts and times."""
    return batch_model(service(request).batch(caller.owner, pipeline_id, batch_id))


@router.get("/pipelines/{pipeline_id}/batches/{batch_id}/errors", response_model=schemas.RecordErrorPage,
            tags=["batches"])
def batch_errors(request: Request, caller: Authed, pipeline_id: str, batch_id: str, limit: Limit = None,
                 cursor: Cursor = None) -> schemas.RecordErrorPage:
    """Per-record errors: the record's index in the batch, the stage and processor, the message."""
    items, next_cursor = service(request).record_errors(caller.owner, pipeline_id, batch_id,
                                                        limit=page_size(request, limit), cursor=cursor)
    return schemas.RecordErrorPage(items=[schemas.RecordError(**i) for i in items], next_cursor=next_cursor)


_ANY = msgspec.json.Decoder()


async def _json_body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError("UNSUPPORTED_MEDIA_TYPE", "send the pipeline as application/json")
    try:
        return _ANY.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise ApiError("VALIDATION_ERROR", "the body is not JSON", details=[{"loc": ["body"], "msg": str(exc)}]
                       ) from None
