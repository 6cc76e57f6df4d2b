"""What the HTTP routes do, over the log and projections: every write an event, every read a
projection. Scoped by owner: another owner's id answers exactly like a missing one.

Routes call one method each and turn its result into a response model; every refusal is an
:class:`~stagebus.api.errors.ApiError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from stagebus.api import batches
from stagebus.api.errors import ApiError, validation_details
from stagebus.api.processors import ProcessorRegistry
from stagebus.api.schemas import PipelineCreate, PipelineUpdate
from stagebus.artifacts.integrity import verify_artifact
from stagebus.artifacts.store import ArtifactStore
from stagebus.consumer import read as read_dataset
from stagebus.errors import InvalidInput, PermanentStageError
from stagebus.events import (
    Artifact,
    PartitionIngested,
    PipelineDefined,
    PipelineDeleted,
    PipelineStarted,
    PipelineStopped,
    RunOpened,
    RunSealed,
    partition_ref,
)
from stagebus.events.types import ApiBatchSubmitted, ApiPipelineTurn, ApiPipelineVersioned
from stagebus.projections import Projections
from stagebus.projections import api_resources as res
from stagebus.projections.pipelines import read_pipeline as read_lifecycle
from stagebus.store import EventStore

_REJECT = msgspec.json.Decoder(dict[str, Any])
TURN_PROBE = 32  # turns looked up per round trip while finding the first free one


class PipelineView(msgspec.Struct, frozen=True, kw_only=True):
    row: res.ApiPipelineRow
    status: str


class BatchReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What a submit answers: the batch, as accepted (a new one is always pending)."""

    batch_id: str
    status: str
    record_count: int


class Service:
    def __init__(self, store: EventStore, projections: Projections, processors: ProcessorRegistry,
                 pipelines: batches.BatchPipelines, *, home: Path, artifacts: ArtifactStore,
                 shared_datasets: str = "",
                 on_submitted: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.projections = projections
        self.processors = processors
        self.pipelines = pipelines
        self.home = home
        self.batch_dir = home / "api" / "batches"  # the records of each accepted batch, one file each
        self.artifacts = artifacts
        self.on_submitted = on_submitted
        self.shared_datasets = frozenset(d.strip() for d in shared_datasets.split(",") if d.strip())
        self._writes = threading.Lock()  # a submit and a delete of one process never interleave
        self._caught_up_at = 0.0
        self._free_turn: dict[str, int] = {}  # per pipeline: no turn below it is free (a hint)

    def fresh(self, *, max_age_s: float = 0.0) -> Any:
        """Catch the projections up (reads see every write acknowledged so far, by any process)
        and return the connection to read them through. ``max_age_s``: skip the catch-up when
        the last one is at most that old (auth: a revocation still takes effect within it)."""
        now = time.monotonic()
        if max_age_s <= 0 or now - self._caught_up_at > max_age_s:
            self.projections.catch_up()
            self._caught_up_at = now
        return self.projections.connection()

    # --- pipelines ------------------------------------------------------------------------

    def create_pipeline(self, owner: str, body: Any) -> PipelineView:
        request = self._validated(PipelineCreate, body, owner)
        pipeline_id = f"pl_{secrets.token_hex(8)}"
        name = batches.pipeline_name(pipeline_id)
        self.store.append([
            ApiPipelineVersioned(pipeline_id=pipeline_id, owner=owner, name=request.name, version=1,
                                 config=request.config.model_dump(mode="json")),
            PipelineDefined(pipeline=name, version="1", stages=self.pipelines.get(name).plan()),
        ])
        return self.pipeline(owner, pipeline_id)

    def pipeline(self, owner: str, pipeline_id: str, *, catch_up: bool = True) -> PipelineView:
        conn = self.fresh() if catch_up else self.projections.connection()
        row = res.read_pipeline(conn, pipeline_id)
        status = read_lifecycle(conn, batches.pipeline_name(pipeline_id)).status if row is not None else "deleted"
        if row is None or row.owner != owner or status == "deleted":
            raise ApiError("PIPELINE_NOT_FOUND", f"no pipeline {pipeline_id!r}")
        return PipelineView(row=row, status=status)

    def pipelines_page(self, owner: str, *, limit: int, cursor: str | None,
                       status: str | None) -> tuple[list[PipelineView], str | None]:
        conn = self.fresh()
        after, found = decode_cursor(cursor), list[PipelineView]()
        while len(found) < limit:
            rows = res.read_pipelines(conn, owner, after=after, limit=limit)
            if not rows:
                break
            for row in rows:
                after = row.position
                state = read_lifecycle(conn, batches.pipeline_name(row.pipeline_id)).status
                if state != "deleted" and (status is None or state == status):
                    found.append(PipelineView(row=row, status=state))
                    if len(found) == limit:
                        break
        more = len(found) == limit and bool(res.read_pipelines(conn, owner, after=after, limit=1))
        return found, encode_cursor(after) if more else None

    def update_pipeline(self, owner: str, pipeline_id: str, body: Any) -> PipelineView:
        current = self.pipeline(owner, pipeline_id)
        request = self._validated(PipelineUpdate, body, owner)
        event = ApiPipelineVersioned(pipeline_id=pipeline_id, owner=owner, name=request.name or current.row.name,
                                     version=current.row.version + 1, config=request.config.model_dump(mode="json"))
        if not self.store.append_one(event).stored:
            raise ApiError("PIPELINE_VERSION_CONFLICT", "the pipeline was updated meanwhile; read it and retry")
        return self.pipeline(owner, pipeline_id)

    def delete_pipeline(self, owner: str, pipeline_id: str) -> None:
        """Append ``PipelineDeleted`` unless a batch is pending or processing. Ordered against
        submits of every API process by the pipeline's turns: the delete takes the first free
        turn only after counting active batches, so a submit that got there first is counted."""
        with self._writes:
            while True:
                self.pipeline(owner, pipeline_id)
                turn = self._first_free_turn(pipeline_id)
                active = res.count_active_batches(self.fresh(), pipeline_id)
                if active:
                    raise ApiError("PIPELINE_HAS_ACTIVE_BATCHES",
                                   f"pipeline {pipeline_id!r} has {active} batch(es) pending or processing")
                claim = ApiPipelineTurn(pipeline_id=pipeline_id, turn=turn, action="delete")
                answer = self.store.append([claim, PipelineDeleted(pipeline=batches.pipeline_name(pipeline_id))])
                if answer[0].stored or not answer[0].conflict:
                    return  # deleted now, or already deleted by someone else (its key was taken)
                # Someone took the turn: look again (its batch is counted, or it was a delete)

    def _first_free_turn(self, pipeline_id: str) -> int:
        """The lowest turn no submit or delete holds; a held delete turn means it is deleted."""
        turn = self._free_turn.get(pipeline_id, 1)
        while True:
            keys = [turn_key(pipeline_id, t) for t in range(turn, turn + TURN_PROBE)]
            held = self.store.get_many(keys)
            for key in keys:
                if key not in held:
                    self._free_turn[pipeline_id] = turn
                    return turn
                event = held[key].event()
                if isinstance(event, ApiPipelineTurn) and event.action == "delete":
                    raise ApiError("PIPELINE_NOT_FOUND", f"no pipeline {pipeline_id!r}")
                turn += 1

    def set_running(self, owner: str, pipeline_id: str, running: bool) -> PipelineView:
        view = self.pipeline(owner, pipeline_id)
        wanted = "active" if running else "stopped"
        if view.status != wanted:
            name = batches.pipeline_name(pipeline_id)
            self.store.append_one(PipelineStarted(pipeline=name) if running else
                                  PipelineStopped(pipeline=name, reason="stopped over the API"))
            if running:
                self.on_submitted()  # held batches are ready now
        return self.pipeline(owner, pipeline_id)

    def metrics(self, pipeline_id: str) -> dict[str, Any]:
        totals = res.read_totals(self.projections.connection(), pipeline_id)
        seen = totals.records_processed + totals.records_failed
        return {
            "batches": totals.batches, "records_processed": totals.records_processed,
            "records_failed": totals.records_failed,
            "error_rate": round(totals.records_failed / seen, 6) if seen else 0.0,
            "latency_p50_ms": percentile_ms(totals.latencies_us, 0.50),
            "latency_p95_ms": percentile_ms(totals.latencies_us, 0.95),
            "last_run_at": totals.last_run_at,
        }

    # --- batches --------------------------------------------------------------------------

    def submit_batch(self, owner: str, pipeline_id: str, records: list[Any],
                     idempotency_key: str | None) -> tuple[BatchReceipt, bool]:
        """Accept ``records`` as one batch: ``(batch, True)``, or the first batch submitted with
        the same ``idempotency_key`` and ``False``. All of it is one atomic append: a crash
        leaves the batch fully accepted or absent (a file without events is never read)."""
        view = self.pipeline(owner, pipeline_id, catch_up=False)  # the route looked it up just now
        data = batches.encode_records(records)
        content_hash = hashlib.sha256(data).hexdigest()
        key_event = ApiBatchSubmitted(batch_id="", pipeline_id=pipeline_id, owner=owner, run_id="", version=0,
                                      record_count=0, idempotency_key=idempotency_key or "")
        if idempotency_key and (earlier := self.store.get(key_event.key)) is not None:
            return self._replayed(earlier.event(), content_hash), False
        batch_id = f"bat_{secrets.token_hex(10)}"
        run_id = batches.run_id_of(batch_id)
        path = self._write_batch_file(batch_id, data)
        name = batches.pipeline_name(pipeline_id)
        dataset = batches.DATASET_PREFIX + pipeline_id
        config = {"processors": view.row.config.get("processors", []),
                  "destination": view.row.config.get("destination", {"type": "records"})}
        events = [
            ApiBatchSubmitted(batch_id=batch_id, pipeline_id=pipeline_id, owner=owner, run_id=run_id,
                              version=view.row.version, record_count=len(records), content_hash=content_hash,
                              idempotency_key=idempotency_key or ""),
            RunOpened(run_id=run_id, pipeline=name, pipeline_version=str(view.row.version),
                      plan=self.pipelines.get(name).plan()),
            PartitionIngested(run_id=run_id, dataset=dataset, partition=batch_id, uri=path.resolve().as_uri(),
                              content_hash=content_hash, size=len(data),
                              metadata={batches.CONFIG_META: batches.encode_config(config),
                                        batches.OWNER_META: owner}),
            RunSealed(run_id=run_id, partitions=(partition_ref(dataset, batch_id),)),
        ]
        with self._writes:
            while True:  # the turn taken meanwhile: probe again from it (was it a delete?)
                try:
                    turn = self._first_free_turn(pipeline_id)
                except ApiError:  # deleted meanwhile: the batch was never accepted
                    path.unlink(missing_ok=True)
                    raise
                claim = ApiPipelineTurn(pipeline_id=pipeline_id, turn=turn, action="submit")
                answer = self.store.append([claim, *events])
                if answer[0].stored or not answer[0].conflict:
                    break  # stored, or refused for the Idempotency-Key (the turn was free)
            if answer[0].stored:
                self._free_turn[pipeline_id] = turn + 1
        first = answer[1]
        if not first.stored:  # a concurrent retry with the same Idempotency-Key won
            path.unlink(missing_ok=True)
            earlier = self.store.get(key_event.key)
            assert earlier is not None
            return self._replayed(earlier.event(), content_hash), False
        self.on_submitted()
        return BatchReceipt(batch_id=batch_id, status="pending", record_count=len(records)), True

    def snapshot_records(self, view: PipelineView, as_of: int | None, max_records: int) -> list[Any]:
        """A dataset source's batch: the records of its valid partitions as of ``as_of`` (the
        newest position when None), verified as they are read."""
        source = view.row.config["source"]
        field = source.get("field", "record")
        records: list[Any] = []
        try:
            with read_dataset(source["dataset"], as_of=as_of, output=source_output(source), home=self.home,
                              store=self.store.url) as snapshot:
                for row in snapshot:
                    records.append(row.get(field) if field is not None and isinstance(row, dict) else row)
                    if len(records) > max_records:
                        raise ApiError("TOO_MANY_RECORDS", f"the dataset has more than {max_records} records, "
                                       "the limit of a batch")
        except (InvalidInput, PermanentStageError) as exc:  # unknown, nothing valid, corrupted
            raise ApiError("SOURCE_NOT_READY", str(exc)) from None
        if not records:
            raise ApiError("SOURCE_NOT_READY", f"dataset {source['dataset']!r} has no valid records to read")
        return records

    def _replayed(self, event: Any, content_hash: str) -> BatchReceipt:
        assert isinstance(event, ApiBatchSubmitted)
        if event.content_hash != content_hash:
            raise ApiError("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for a batch with other records")
        row = self._batch_row(event.owner, event.pipeline_id, event.batch_id)
        return BatchReceipt(batch_id=row.batch_id, status=row.status, record_count=row.record_count)

    def _write_batch_file(self, batch_id: str, data: bytes) -> Path:
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        path = self.batch_dir / f"{batch_id}.ndjson"
        tmp = self.batch_dir / f".{batch_id}.tmp"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def batch(self, owner: str, pipeline_id: str, batch_id: str) -> res.ApiBatchRow:
        self.pipeline(owner, pipeline_id)
        return self._batch_row(owner, pipeline_id, batch_id)

    def _batch_row(self, owner: str, pipeline_id: str, batch_id: str) -> res.ApiBatchRow:
        row = res.read_batch(self.fresh(), batch_id)
        if row is None or row.owner != owner or row.pipeline_id != pipeline_id:
            raise ApiError("BATCH_NOT_FOUND", f"no batch {batch_id!r} in pipeline {pipeline_id!r}")
        return row

    def batches_page(self, owner: str, pipeline_id: str, *, limit: int, cursor: str | None,
                     status: str | None) -> tuple[list[res.ApiBatchRow], str | None]:
        self.pipeline(owner, pipeline_id)
        rows = res.read_batches(self.fresh(), pipeline_id, status=status, after=decode_cursor(cursor),
                                limit=limit + 1)
        page = rows[:limit]
        return page, encode_cursor(page[-1].position) if len(rows) > limit else None

    def record_errors(self, owner: str, pipeline_id: str, batch_id: str, *, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Rejected records of the batch, from its ``process`` rejects artifact (sha256 checked)."""
        row = self.batch(owner, pipeline_id, batch_id)
        start = decode_cursor(cursor)
        if row.rejects is None:
            return [], None
        artifact = msgspec.convert(row.rejects, Artifact)
        path = self.artifacts.path(artifact)
        verify_artifact(path, artifact)
        items: list[dict[str, Any]] = []
        with path.open("rb") as fh:
            for number, line in enumerate(fh):
                if number < start:
                    continue
                if len(items) == limit:
                    return items, encode_cursor(number)
                reject = _REJECT.decode(line)
                wrapped = reject.get("record")
                items.append({"record_index": reject.get("index"), "stage": res.PROCESS_STAGE,
                              "processor": wrapped.get("processor") if isinstance(wrapped, dict) else None,
                              "error_message": reject.get("error", "")})
        return items, None

    # --- helpers --------------------------------------------------------------------------

    def _validated(self, model: type[PipelineCreate] | type[PipelineUpdate], body: Any, owner: str) -> Any:
        """The parsed request, or one 400 listing every problem: the body's shape and each
        processor's own config (checked even when other parts are wrong)."""
        details: list[dict[str, Any]] = []
        parsed: BaseModel | None = None
        try:
            parsed = model.model_validate(body)
        except ValidationError as exc:
            details.extend(validation_details(exc.errors()))
        config = body.get("config") if isinstance(body, dict) else None
        processors = config.get("processors") if isinstance(config, dict) else None
        for i, spec in enumerate(processors if isinstance(processors, list) else []):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                continue  # reported by the model above
            raw = spec.get("config", {})
            for problem in self.processors.validate(spec["name"], raw if isinstance(raw, dict) else {}):
                details.append({"loc": ["config", "processors", str(i), *map(str, problem["loc"])],
                                "msg": problem["msg"]})
        source = getattr(getattr(parsed, "config", None), "source", None)
        if source is not None and source.type == "dataset" and not self._readable(owner, source.dataset):
            details.append({"loc": ["config", "source", "dataset"],
                            "msg": f"dataset {source.dataset!r} is not shared with the API (STAGEBUS_API_DATASETS) "
                                   "and is no pipeline of yours"})
        if details or parsed is None:
            raise ApiError("VALIDATION_ERROR", "the pipeline config is invalid", details=details)
        return parsed

    def _readable(self, owner: str, dataset: str) -> bool:
        """Whether ``owner``'s pipelines may read ``dataset``: shared by the operator, or an API
        pipeline of the same owner (another owner's answers like a missing one)."""
        if "*" in self.shared_datasets or dataset in self.shared_datasets:
            return True
        if not dataset.startswith(batches.DATASET_PREFIX):
            return False
        row = res.read_pipeline(self.fresh(), dataset[len(batches.DATASET_PREFIX):])
        return row is not None and row.owner == owner


def source_output(source: dict[str, Any]) -> str:
    if source.get("output"):
        return str(source["output"])
    return "deliver.records" if str(source["dataset"]).startswith(batches.DATASET_PREFIX) else "normalize.records"


def turn_key(pipeline_id: str, turn: int) -> str:
    return ApiPipelineTurn(pipeline_id=pipeline_id, turn=turn, action="").key


def percentile_ms(sorted_us: list[int], q: float) -> float | None:
    """Nearest-rank percentile of ascending microseconds, in milliseconds."""
    if not sorted_us:
        return None
    rank = max(int(-(-q * len(sorted_us) // 1)), 1)  # ceil(q * n), at least 1
    return round(sorted_us[rank - 1] / 1000, 3)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p") or not text[1:].isdigit() or len(text) > 20:
            raise ValueError(cursor)
        return int(text[1:])
    except ValueError:
        raise ApiError("INVALID_CURSOR", "the cursor is not one this API returned") from None
