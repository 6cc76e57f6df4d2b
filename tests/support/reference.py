"""Driving the reference pipeline through the real Executor, one stage task at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from stagebus.actors.executor import Executor, Outcome
from stagebus.actors.gate import TaskRef
from stagebus.artifacts.local import ArtifactStore
from stagebus.events import (
    RUN_SCOPE,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunOpened,
    RunSealed,
    StageFailed,
)
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.stages import build_reference_pipeline
from stagebus.store import EventStore, MemoryEventStore

PARTITION_STAGES = ("ingest", "normalize", "extract")
RUN_STAGES = ("link", "index", "serve")


class ReferenceRun:
    """One run of the reference pipeline over files, in a log and artifact root of its own."""

    def __init__(self, root: Path, config: Mapping[str, Mapping[str, Any]] | None = None,
                 store: EventStore | None = None, run_id: str = "run-1", *, reuse: bool = False) -> None:
        self.pipeline: Pipeline = build_reference_pipeline(config)
        self.store = store or MemoryEventStore()
        self.artifacts = ArtifactStore(root)
        self.executor = Executor(self.store, self.artifacts, PipelineRegistry([self.pipeline]),
                                 lookups=LogLookups(self.store) if reuse else None)
        self.run_id = run_id
        self.refs: list[str] = []

    def open(self) -> ReferenceRun:
        self.store.append_one(RunOpened(run_id=self.run_id, pipeline=self.pipeline.name,
                                        pipeline_version=self.pipeline.version, plan=self.pipeline.plan()))
        return self

    def publish(self, dataset: str, partition: str, path: Path, *, content_hash: str | None = None,
                metadata: dict[str, str] | None = None) -> str:
        data = path.read_bytes()
        self.store.append_one(PartitionIngested(
            run_id=self.run_id, dataset=dataset, partition=partition, uri=path.resolve().as_uri(),
            content_hash=content_hash or hashlib.sha256(data).hexdigest(), size=len(data),
            metadata=metadata or {},
        ))
        ref = f"{dataset}/{partition}"
        self.refs.append(ref)
        return ref

    def seal(self) -> None:
        self.store.append_one(RunSealed(run_id=self.run_id, partitions=tuple(self.refs)))

    def task(self, stage: str, partition: str = RUN_SCOPE) -> TaskRef:
        return TaskRef(self.run_id, stage, partition)

    def execute(self, stage: str, partition: str = RUN_SCOPE, *, attempt: int = 1, final: bool = True) -> Outcome:
        return self.executor.execute(self.task(stage, partition), self.pipeline.name, attempt=attempt, final=final)

    def run_partition_stages(self, stages: tuple[str, ...] = PARTITION_STAGES) -> None:
        for ref in self.refs:
            for stage in stages:
                outcome = self.execute(stage, ref)
                assert outcome in (Outcome.COMPLETE, Outcome.REUSED), (stage, ref, outcome)

    def run_all(self) -> None:
        self.run_partition_stages()
        self.seal()
        for stage in RUN_STAGES:
            outcome = self.execute(stage)
            assert outcome in (Outcome.COMPLETE, Outcome.REUSED), (stage, outcome)

    # --- what it produced -------------------------------------------------------------------

    def manifest(self, stage: str, partition: str = RUN_SCOPE) -> Manifest:
        record = self.store.get(f"manifest/{self.run_id}/{stage}/{partition}")
        assert record is not None, f"no manifest for {stage} {partition}"
        event = record.event()
        assert isinstance(event, ManifestWritten)
        return event.manifest

    def artifact_path(self, stage: str, output: str, partition: str = RUN_SCOPE) -> Path:
        (artifact,) = [a for a in self.manifest(stage, partition).artifacts if a.name == output]
        return self.artifacts.path(artifact)

    def records(self, stage: str, output: str, partition: str = RUN_SCOPE) -> list[dict[str, Any]]:
        return list(_lines(self.artifact_path(stage, output, partition)))

    def failures(self) -> list[StageFailed]:
        return [e for e in (r.event() for r in self.store.read()) if isinstance(e, StageFailed)]


class LogLookups:
    """The projection lookups the executor needs for reuse, answered by scanning the log."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def find_reusable(self, stage: str, partition: str, input_hash: str, config_hash: str) -> Manifest | None:
        for record in self.store.read():
            event = record.event()
            if isinstance(event, ManifestWritten) and event.manifest.status == "complete":
                m = event.manifest
                if (m.stage, m.partition, m.input_hash, m.config_hash) == (stage, partition, input_hash, config_hash):
                    return m
        return None

    def pipeline_status(self, pipeline: str) -> str:
        return "active"


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for line in fh:
            yield msgspec.json.decode(line)
