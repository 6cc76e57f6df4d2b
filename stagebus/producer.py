"""The producer: announces raw partitions (files) for a run, and seals the run.

Everything is checked before anything is appended: names, the file (exists, regular, not
empty), its sha256 and size (streamed). Every append is keyed, so a retried call stores nothing
new and says so: ``RunOpened`` once per run, ``PartitionIngested`` once per (run, dataset,
partition), ``RunSealed`` once per run. A run's first partition is appended together with its
``RunOpened`` in one atomic batch.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from stagebus.actors.lifecycle import refuse_if_deleted
from stagebus.artifacts.names import NAME_MAX, encoded_length
from stagebus.errors import InvalidInput, StagebusError, StoreError
from stagebus.events import (
    Event,
    PartitionIngested,
    PlannedStage,
    RunAbandoned,
    RunOpened,
    RunSealed,
    partition_ref,
)
from stagebus.projections import Projections
from stagebus.store import Appended, EventStore


class PartitionFile(NamedTuple):
    """A partition checked and hashed, ready to publish."""

    dataset: str
    partition: str
    uri: str
    content_hash: str
    size: int
    metadata: dict[str, str]

    @property
    def ref(self) -> str:
        return partition_ref(self.dataset, self.partition)


class PublishResult(NamedTuple):
    run_id: str
    position: int  # of the stored event, or of the one that already held its key
    stored: bool  # False: the log already had it (a retry); nothing was appended
    same_content: bool = True  # False: an earlier publish of this key named other bytes


def new_run_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def check_name(kind: str, value: str) -> str:
    """A dataset, partition or run name: non-empty, no path syntax, nothing invisible, and short
    enough on disk: its encoded form (:func:`stagebus.artifacts.names.encode_name`) must fit in
    one path component, :data:`NAME_MAX` bytes, so the bound counts UTF-8 bytes, not characters."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{kind} name must not be empty")
    if any(unicodedata.category(c) == "Cs" for c in value):
        raise InvalidInput(f"{kind} name {value!r} is not valid Unicode")
    if len(value.encode()) > NAME_MAX or encoded_length(value) > NAME_MAX:
        raise InvalidInput(f"{kind} name {value[:20]!r}... is {encoded_length(value)} bytes on disk, over the "
                           f"{NAME_MAX}-byte limit (each UTF-8 byte other than A-Z a-z 0-9 - _ . = takes 3)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise InvalidInput(f"{kind} name {value!r} contains a control character")
    if "/" in value or "\\" in value:
        raise InvalidInput(f"{kind} name {value!r} contains a path separator")
    if not value.strip("."):
        raise InvalidInput(f"{kind} name {value!r} is only dots")
    if ".." in value:
        raise InvalidInput(f"{kind} name {value!r} contains '..'")
    if value != value.strip():
        raise InvalidInput(f"{kind} name {value!r} starts or ends with whitespace")
    return value


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput("metadata keys and values must be strings")
        if not key or key != key.strip():
            raise InvalidInput(f"metadata key {key!r} must be non-empty, without surrounding whitespace")
        if any(unicodedata.category(c) == "Cc" for c in key + value):
            raise InvalidInput(f"metadata {key!r} contains a control character")
        checked[key] = value
    return dict(sorted(checked.items()))


def describe_file(dataset: str, partition: str, path: str | Path,
                  metadata: Mapping[str, str] | None = None) -> PartitionFile:
    """Check names and file, and hash the file, without touching the log."""
    check_name("dataset", dataset)
    check_name("partition", partition)
    meta = check_metadata(metadata)
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInput(f"{path} is not a regular file")
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            size = handle.tell()
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is not a regular file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise InvalidInput(f"{path} is empty")
    return PartitionFile(dataset, partition, path.resolve().as_uri(), digest, size, meta)


class Producer:
    """Publishes partitions of one pipeline's runs into ``store``.

    With ``projections`` it catches them up after every append (so a following ``seal`` or
    inspection sees the partition) and reads a run's partitions from them when sealing.
    """

    def __init__(self, store: EventStore, pipeline_name: str, plan: tuple[PlannedStage, ...],
                 pipeline_version: str = "", *, projections: Projections | None = None) -> None:
        self.store = store
        self.pipeline_name = pipeline_name
        self.plan = plan
        self.pipeline_version = pipeline_version
        self.projections = projections

    def open_run(self, run_id: str | None = None) -> str:
        """Open ``run_id`` (a new one if None). Opening an open run of this pipeline is a no-op."""
        run_id = check_name("run id", run_id) if run_id is not None else new_run_id()
        if not self._run_exists(run_id):
            self._append([self._opened(run_id)])
        return run_id

    def publish(self, dataset: str, partition: str, path: str | Path, metadata: Mapping[str, str] | None = None,
                *, run_id: str | None = None) -> PublishResult:
        """Announce one partition file for ``run_id`` (opening it, or a new run if None)."""
        return self.publish_file(describe_file(dataset, partition, path, metadata), run_id=run_id)

    def publish_file(self, part: PartitionFile, *, run_id: str | None = None) -> PublishResult:
        run_id = check_name("run id", run_id) if run_id is not None else new_run_id()
        check_name("dataset", part.dataset)
        check_name("partition", part.partition)
        event = PartitionIngested(run_id=run_id, dataset=part.dataset, partition=part.partition, uri=part.uri,
                                  content_hash=part.content_hash, size=part.size, metadata=part.metadata)
        existing = self.store.get(event.key)
        if existing is not None:
            return self._already(run_id, existing.position, existing.event(), part)
        if self._sealed(run_id):
            raise InvalidInput(f"run {run_id} is sealed; publish into a new run")
        self._refuse_if_abandoned(run_id)
        batch: list[Event] = [event] if self._run_exists(run_id) else [self._opened(run_id), event]
        outcome = self._append(batch)
        if outcome[-1].stored:
            return PublishResult(run_id, outcome[-1].position or 0, True)
        if len(batch) == 2 and outcome[0].conflict and not outcome[-1].conflict:
            # Someone opened the run meanwhile: publish into it.
            return self.publish_file(part, run_id=run_id)
        existing = self.store.get(event.key)
        assert existing is not None, "a refused keyed append names the event holding the key"
        return self._already(run_id, existing.position, existing.event(), part)

    def seal(self, run_id: str) -> PublishResult:
        """Close the run's partition set: the run-level stages may run once it is sealed."""
        check_name("run id", run_id)
        if not self._run_exists(run_id):
            raise InvalidInput(f"run {run_id} was never opened")
        key = RunSealed(run_id=run_id, partitions=()).key
        existing = self.store.get(key)
        if existing is not None:
            return PublishResult(run_id, existing.position, False)
        self._refuse_if_abandoned(run_id)
        partitions = self._partitions(run_id)
        if not partitions:
            raise InvalidInput(f"run {run_id} has no partitions to seal")
        (outcome,) = self._append([RunSealed(run_id=run_id, partitions=partitions)])
        return PublishResult(run_id, outcome.position or 0, outcome.stored)

    # --- helpers -------------------------------------------------------------------------

    def _opened(self, run_id: str) -> RunOpened:
        refuse_if_deleted(self.store, self.pipeline_name)
        return RunOpened(run_id=run_id, pipeline=self.pipeline_name, pipeline_version=self.pipeline_version,
                         plan=self.plan)

    def _run_exists(self, run_id: str) -> bool:
        record = self.store.get(f"run/{run_id}")
        if record is None:
            return False
        opened = record.event()
        if isinstance(opened, RunOpened) and opened.pipeline != self.pipeline_name:
            raise InvalidInput(f"run {run_id} belongs to pipeline {opened.pipeline!r}, not {self.pipeline_name!r}")
        return True

    def _refuse_if_abandoned(self, run_id: str) -> None:
        if self.store.get(RunAbandoned(run_id=run_id).key) is not None:
            raise InvalidInput(f"run {run_id} was abandoned; publish into a new run")

    def _sealed(self, run_id: str) -> bool:
        return self.store.get(RunSealed(run_id=run_id, partitions=()).key) is not None

    def _partitions(self, run_id: str) -> tuple[str, ...]:
        if self.projections is not None:
            self.projections.catch_up()
            run = self.projections.run(run_id)
            return run.partitions if run is not None else ()
        # No projections: walk the log (fine for a producer; the projections are the fast path).
        return tuple(
            event.ref for event in (r.event() for r in self.store.read() if r.type == "partition_ingested")
            if isinstance(event, PartitionIngested) and event.run_id == run_id
        )

    def _already(self, run_id: str, position: int, event: object, part: PartitionFile) -> PublishResult:
        same = isinstance(event, PartitionIngested) and event.content_hash == part.content_hash
        return PublishResult(run_id, position, False, same)

    def _append(self, batch: list[Event]) -> list[Appended]:
        outcome = self.store.append(batch)
        if self.projections is not None and any(o.stored for o in outcome):
            try:
                self.projections.catch_up()
            except (StagebusError, sqlite3.Error) as exc:
                # The append is done: say what it stored, so a retry goes into the same run.
                stored = ", ".join(f"{event.type_name} {getattr(event, 'run_id', '')} at position {o.position}"
                                   for event, o in zip(batch, outcome, strict=True) if o.stored)
                raise StoreError(f"stored {stored}, but the projections could not catch up: {exc}") from exc
        return outcome


def open_producer(pipeline: str = "reference", *, home: str | Path | None = None,
                  store: str | None = None) -> Producer:
    """A producer for ``pipeline`` on the home's log (or ``store``), configured like the CLI:
    arguments first, then ``STAGEBUS_*`` environment, then defaults. Usable from any process
    that can reach the store::

        producer = stagebus.open_producer(home="/data/stagebus")
        run_id = producer.open_run()
        producer.publish("airports", "state=CA", "ca.csv", {"source": "faa"}, run_id=run_id)
        producer.seal(run_id)
    """
    from stagebus.pipeline.registry import load_pipelines
    from stagebus.settings import Settings
    from stagebus.store import open_store

    given: dict[str, object] = {}
    if home is not None:
        given["home"] = Path(home)
    if store is not None:
        given["store"] = store
    settings = Settings(**given)  # type: ignore[arg-type]
    chosen = load_pipelines(settings.pipelines).get(pipeline)
    log = open_store(settings.store_url)
    projections = None if log.url == "memory://" else Projections(log, settings.projections_path)
    return Producer(log, chosen.name, chosen.plan(), chosen.version, projections=projections)
