"""What each inspector page shows, read from the log and projections opened read-only.

The routes call one method per page and render what it returns; nothing here writes a file.
Every read is bounded (a page of the ledger through an index, keyed lookups, a bounded scan of
the log's tail), so a page costs the same at 100k partitions as at 10. The queries themselves
live with the projections (``ledger_pages``, ``report``, ``explain``) and in
``stagebus.pipeline.rejects``, shared with the CLI.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from stagebus.artifacts.location import open_artifacts
from stagebus.errors import InvalidInput, StagebusError, StoreError
from stagebus.events import RUN_SCOPE, AnyEvent, StageFailed, failure_key, partition_ref, to_builtins
from stagebus.pipeline.rejects import read_rejects, sensitive_fields, sources
from stagebus.projections import STATUSES, Projections
from stagebus.projections import ledger_pages as pages
from stagebus.projections.anchors import checkpoint_anchors
from stagebus.projections.explain import explain
from stagebus.projections.generations import FileGenerations
from stagebus.projections.recent import read_recent_runs, read_run_ids
from stagebus.projections.report import describe_run, listed_run, run_status
from stagebus.settings import Settings
from stagebus.store import EventStore, RecordedEvent, open_store
from stagebus.store.anchors import check_anchor, head_anchor
from stagebus.store.keys import RUNS_TABLE

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LOG_WINDOW = 500  # events read per step when scanning the log's tail backwards
LOG_SCAN = 10_000  # at most this many events are looked at to fill one page of a filtered log view
RECENT_RUNS = 10  # the overview looks for runs in progress among this many of the newest runs (each
# run's summary is computed on read from its task rows: ~10 ms per 1,000 partitions)
RECENT_FAILED_RUNS = 10  # and for failures among this many
RUNS_PAGE = 20
REJECTS_SHOWN = 100
_KEYSET = msgspec.json.Encoder()
_KEYSET_DECODE = msgspec.json.Decoder(list[Any])


class NotFound(InvalidInput):
    """A run, partition or position the inspector has nothing for (or the caller may not see)."""


def encode_keyset(values: list[Any] | None) -> str | None:
    return None if values is None else base64.urlsafe_b64encode(_KEYSET.encode(values)).decode().rstrip("=")


def decode_keyset(token: str | None) -> list[Any] | None:
    if not token:
        return None
    try:
        return _KEYSET_DECODE.decode(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput("not a page cursor of this inspector") from None


@dataclass(frozen=True)
class Scope:
    """What one caller may see: every pipeline (``pipelines`` None, the open loopback inspector)
    or the pipelines its owner owns (behind the API's key auth)."""

    pipelines: frozenset[str] | None = None

    def sees(self, pipeline: str) -> bool:
        return self.pipelines is None or pipeline in self.pipelines


EVERYTHING = Scope()


@dataclass
class Verified:
    ok: bool
    checked: int
    at: str
    message: str
    seconds: float


class Inspector:
    """The read side of one home, shared by every request of one server process.

    One lock serializes the reads: the read-only projections are one SQLite connection (or one
    in-memory copy caught up from the log), and an inspector is read by a handful of people."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: EventStore | None = None
        self._projections: Projections | None = None
        self.verified: Verified | None = None  # the last on-demand verify of this process
        self._signature: tuple[object, object] = (None, None)

    # --- opening ---------------------------------------------------------------------------

    @property
    def store(self) -> EventStore:
        if self._store is None:
            self._store = open_store(self.settings.store_url, readonly=True)
        return self._store

    def refresh(self, *, force: bool = False) -> None:
        """Reopen what changed on disk since it was opened. A read-only open of a SQLite file
        nobody writes is immutable (it creates no file), so it would not see, or would misread,
        what a writer changes later: a long-running inspector reopens the log when its files
        change (in WAL read mode once a writer is there), and the projections when theirs do
        (else they keep catching up in memory from the reopened log)."""
        log, projections = self._signatures()
        if force or projections != self._signature[1]:
            if self._projections is not None:
                self._projections.close()
            self._projections = None
        if force or log != self._signature[0]:
            if self._store is not None:
                self._store.close()
            self._store = None
            if self._projections is not None:
                self._projections.store = self.store
        self._signature = (log, projections)

    def _signatures(self) -> tuple[object, object]:
        url = self.settings.store_url
        log = None
        if url.startswith("sqlite:///"):  # Redis and memory logs are read live
            path = Path(url.removeprefix("sqlite:///"))
            log = (_stat(path), _stat(Path(f"{path}-wal")))
        root = self.settings.projections_path
        live = FileGenerations(root).live() if root.exists() else None
        files = (None,) if live is None else (_stat(FileGenerations(root).path(live)),
                                              _stat(Path(f"{FileGenerations(root).path(live)}-wal")))
        return log, (live, *files)

    def read(self, compute: Callable[[Inspector], dict[str, Any]]) -> dict[str, Any]:
        """``compute(self)`` under the lock, on files reopened if they changed; once more on
        everything reopened if a file changed under the read (a writer raced it)."""
        with self._lock:
            self.refresh()
            try:
                return compute(self)
            except (sqlite3.DatabaseError, StoreError):
                self.refresh(force=True)
                return compute(self)

    def projections(self) -> Projections:
        """The read-only projections, caught up with the log (in memory if the files lag it)."""
        if self._projections is None:
            root = None if self.store.url == "memory://" else self.settings.projections_path
            self._projections = Projections(self.store, root, readonly=True)
        self._projections.catch_up()
        return self._projections

    def close(self) -> None:
        with self._lock:
            if self._projections is not None:
                self._projections.close()
            if self._store is not None:
                self._store.close()
            self._projections = self._store = None

    # --- pages -----------------------------------------------------------------------------

    def overview(self, scope: Scope = EVERYTHING) -> dict[str, Any]:
        p = self.projections()
        conn = p._conn()
        recent = [run for _, run in read_recent_runs(conn, RECENT_RUNS, pipelines=scope.pipelines)]
        in_progress = []
        for run in recent:
            status = run_status(run)
            if status in ("running", "pending"):
                in_progress.append({**listed_run(run), "stages": [
                    {"stage": s.stage, "done": s.complete + s.reused, "expected": s.expected, "failed": s.failed,
                     "running": s.running, "selected": s.selected} for s in run.stage_summaries]})
        failures = []
        for run in recent[:RECENT_FAILED_RUNS]:
            for task in p.failed_tasks(run.run_id, limit=10):
                failures.append({"run_id": run.run_id, "stage": task.stage, "partition": task.partition,
                                 "error": task.last_error or "", "at": task.updated_at})
        failures.sort(key=lambda f: f["at"], reverse=True)
        runs = conn.execute(f"SELECT count(*) FROM {RUNS_TABLE}").fetchone()[0] if scope.pipelines is None else len(
            read_run_ids(conn, scope.pipelines))
        head = head_anchor(self.store)
        last = next(iter(self.store.read(after=head.position - 1, limit=1)), None) if head.position else None
        return {"counts": pages.status_counts(conn, scope.pipelines), "statuses": STATUSES,
                "runs": runs, "recent": RECENT_RUNS, "in_progress": in_progress, "failures": failures[:10],
                "head": {"position": head.position, "hash": head.hash,
                         "recorded_at": last.recorded_at if last else None},
                "checkpoint": p.checkpoint(), "applied_in_memory": p.applied_in_memory,
                "verified": self.verified, "live": bool(in_progress)}

    def ledger(self, f: pages.LedgerFilter, *, sort: str, descending: bool, after: str | None,
               before: str | None, limit: int) -> dict[str, Any]:
        if sort not in pages.SORTS:
            raise InvalidInput(f"unknown sort {sort!r} (use one of {', '.join(pages.SORTS)})")
        if f.status is not None and f.status not in STATUSES:
            raise InvalidInput(f"unknown status {f.status!r} (use one of {', '.join(STATUSES)})")
        conn = self.projections()._conn()
        try:
            page = pages.read_page(conn, f, sort=sort, descending=descending, after=decode_keyset(after),
                                   before=decode_keyset(before), limit=max(1, min(limit, MAX_PAGE_SIZE)))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return {"page": page, "total": pages.count(conn, f), "datasets": pages.datasets(conn),
                "statuses": STATUSES, "sorts": tuple(pages.SORTS), "after": encode_keyset(page.end),
                "before": encode_keyset(page.start), "live": any(r.status == "pending" for r in page.rows)}

    def partition(self, dataset: str, partition: str, run_id: str | None, scope: Scope = EVERYTHING) -> dict[str, Any]:
        p = self.projections()
        ref = partition_ref(dataset, partition)
        ingested = p.partition_runs(ref)
        headers = {r: h for r, _ in ingested if (h := p.run_header(r)) is not None and scope.sees(h.pipeline)}
        visible = [(r, pos) for r, pos in ingested if r in headers]
        if not visible:
            raise NotFound(f"unknown partition {ref!r}: no run ingested it")
        try:
            why = explain(p, dataset, partition, run_id=run_id)
        except InvalidInput as exc:
            raise NotFound(str(exc)) from None
        header = headers.get(why.run_id)
        if header is None:
            raise NotFound(f"unknown run {why.run_id!r}")
        conn = p._conn()
        verdicts = pages.read_verdicts(conn, ref, [r for r, _ in visible])
        tasks = []
        for planned in header.plan:
            task_ref = RUN_SCOPE if planned.scope == "run" else ref
            manifest = p.manifest(why.run_id, planned.name, task_ref)
            task = p.task(why.run_id, planned.name, task_ref)
            failure = self.store.get(failure_key(why.run_id, planned.name, task_ref))
            event = failure.event() if failure else None
            manifest_record = self.store.get(f"manifest/{why.run_id}/{planned.name}/{task_ref}") if manifest else None
            tasks.append({"stage": planned.name, "scope": planned.scope, "task_ref": task_ref, "task": task,
                          "manifest": manifest, "manifest_position": manifest_record.position
                          if manifest_record else None,
                          "failure": event if isinstance(event, StageFailed) else None,
                          "failure_position": failure.position if failure else None})
        return {"dataset": dataset, "partition": partition, "ref": ref, "entry": p.partition(dataset, partition),
                "history": pages.read_history(conn, dataset, partition),
                "runs": [{"run_id": r, "position": pos, "verdict": verdicts.get(r),
                          "pipeline": headers[r].pipeline} for r, pos in visible],
                "why": why, "tasks": tasks, "live": p.partition(dataset, partition).status == "pending"}

    def runs(self, before: int | None, limit: int, scope: Scope = EVERYTHING) -> dict[str, Any]:
        """A page of runs, newest first, opened before log position ``before``."""
        p = self.projections()
        found = read_recent_runs(p._conn(), limit + 1, before=before, pipelines=scope.pipelines)
        rows = [{**listed_run(run), "position": seq} for seq, run in found[:limit]]
        older = rows[-1]["position"] if len(found) > limit else None
        return {"runs": rows, "older": older, "live": any(r["status"] in ("running", "pending") for r in rows)}

    def run(self, run_id: str, scope: Scope = EVERYTHING) -> dict[str, Any]:
        p = self.projections()
        header = p.run_header(run_id)
        if header is None or not scope.sees(header.pipeline):
            raise NotFound(f"unknown run {run_id!r}")
        info = describe_run(p, run_id)
        resume = None
        failed = [s["stage"] for s in info["stages"] if s["failed"]]
        if failed:
            resume = f"stagebus run --run-id {run_id} --resume-from {failed[0]}"
        parent = p.run_header(info["parent_run_id"]) if info["parent_run_id"] else None
        return {"run": info, "plan": header.plan, "resume": resume, "position": header.position,
                "parent_visible": parent is not None and scope.sees(parent.pipeline),
                "live": info["status"] in ("running", "pending")}

    def rejects(self, run_id: str | None, stage: str | None, dataset: str | None, partition: str | None,
                limit: int, scope: Scope = EVERYTHING) -> dict[str, Any]:
        p = self.projections()
        runs = [run for _, run in read_recent_runs(p._conn(), RECENT_RUNS, pipelines=scope.pipelines)]
        chosen = p.run(run_id) if run_id else (runs[0] if runs else None)
        if run_id and (chosen is None or not scope.sees(chosen.pipeline)):
            raise NotFound(f"unknown run {run_id!r}")
        if chosen is None:
            return {"run": None, "runs": [], "rejects": [], "total": 0, "error": None, "sensitive": []}
        if chosen.run_id not in {r.run_id for r in runs}:
            runs.append(chosen)
        stages = [s.name for s in chosen.plan]
        if stage is not None and stage not in stages:
            raise InvalidInput(f"run {chosen.run_id} has no stage {stage!r}")
        out: dict[str, Any] = {"run": chosen.run_id, "runs": [r.run_id for r in runs], "stages": stages,
                               "rejects": [], "total": 0, "error": None, "sensitive": []}
        try:
            sensitive = sensitive_fields(self.settings.pipelines, chosen)
            artifacts = open_artifacts(self.settings, create=False)
            found = sources(p, artifacts, chosen.run_id, stage, dataset, partition)
            total = sum(s.artifact.records for s in found)
            out.update(rejects=list(read_rejects(found, min(limit, total), sensitive)), total=total,
                       sensitive=sorted(sensitive))
        except StagebusError as exc:  # a tampered artifact, a pipeline this process cannot load
            out["error"] = str(exc)
        return out

    def log(self, *, type_name: str | None, key: str | None, before: int | None, limit: int,
            scope: Scope = EVERYTHING) -> dict[str, Any]:
        """The newest events (before position ``before``), filtered by exact type and key prefix,
        newest first. A filtered view looks at no more than ``LOG_SCAN`` events for one page."""
        head = self.store.head()
        start = head + 1 if before is None else min(before, head + 1)
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        found: list[RecordedEvent] = []
        scanned = 0
        low = start
        visible = self._visible_runs(scope)
        for record in self._backwards(start):
            scanned += 1
            low = record.position
            if (type_name is None or record.type == type_name) and (key is None or (record.key or "").startswith(key)) \
                    and (visible is None or _run_of(record) in visible):
                found.append(record)
                if len(found) > limit:
                    break
            if scanned >= LOG_SCAN and (type_name or key):
                break
        more = len(found) > limit
        found = found[:limit]
        rows = [{"position": r.position, "recorded_at": r.recorded_at, "type": r.type, "key": r.key,
                 "fields": _fields(r)} for r in found]
        older = found[-1].position if (more and found) else (low if scanned >= LOG_SCAN and low > 1 else None)
        return {"rows": rows, "head": head, "older": older, "scanned": scanned,
                "stopped_early": scanned >= LOG_SCAN and not more and low > 1, "live": before is None,
                "types": _event_types()}

    def event(self, position: int, scope: Scope = EVERYTHING) -> dict[str, Any]:
        record = next(iter(self.store.read(after=position - 1, limit=1)), None) if position >= 1 else None
        if record is None or record.position != position:
            raise NotFound(f"no event at position {position} (the log has 1 to {self.store.head()})")
        visible = self._visible_runs(scope)
        if visible is not None and _run_of(record) not in visible:
            raise NotFound(f"no event at position {position}")
        return {"position": record.position, "recorded_at": record.recorded_at, "type": record.type,
                "key": record.key, "hash": record.hash, "version": record.version, "fields": _fields(record),
                "head": self.store.head()}

    def verify(self) -> Verified:
        """Walk the hash chain and hold the log to the projections' checkpoints (reads only)."""
        began = time.monotonic()
        report = self.store.verify()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if not report.ok:
            result = Verified(False, report.checked, at, f"broken at position {report.broken_at}: {report.reason}",
                              time.monotonic() - began)
        else:
            anchors = [] if self.store.url == "memory://" else checkpoint_anchors(self.settings.projections_path)
            findings = [f for f in (check_anchor(self.store, a) for a in anchors) if f]
            message = findings[0] if findings else (
                f"hash chain intact; {len(anchors)} projection checkpoint(s) held")
            result = Verified(not findings, report.checked, at, message, time.monotonic() - began)
        self.verified = result
        return result

    # --- helpers ---------------------------------------------------------------------------

    def _visible_runs(self, scope: Scope) -> set[str | None] | None:
        if scope.pipelines is None:
            return None
        return set(read_run_ids(self.projections()._conn(), scope.pipelines))

    def _backwards(self, start: int) -> Iterator[RecordedEvent]:
        """Events before position ``start``, newest first, read in windows."""
        high = start
        while high > 1:
            low = max(high - LOG_WINDOW, 1)
            window = list(self.store.read(after=low - 1, limit=high - low))
            yield from reversed(window)
            high = low


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def _fields(record: RecordedEvent) -> dict[str, Any]:
    fields = to_builtins(record.event())
    fields.pop("type", None)
    return fields  # type: ignore[no-any-return]


def _run_of(record: RecordedEvent) -> str | None:
    value = _fields(record).get("run_id")
    return value if isinstance(value, str) else None


def _event_types() -> list[str]:
    """Every event type's tag, as the log stores it in ``type``."""
    return sorted(t.__struct_config__.tag for t in typing.get_args(AnyEvent))
