"""What a stage function sees: its config, its inputs, writers for its declared outputs."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import msgspec
from pydantic import BaseModel, ValidationError

from stagebus.artifacts.integrity import VerifiedReader, verify_artifact
from stagebus.artifacts.pending import HOST, PendingFile
from stagebus.artifacts.store import ArtifactStore
from stagebus.errors import ArtifactCorrupted, ContractError, InvalidInput
from stagebus.events import RUN_SCOPE, Artifact, Manifest, PartitionIngested, StageMetrics
from stagebus.pipeline.contract import REJECTS, StageContract
from stagebus.pipeline.journal import ItemJournal
from stagebus.pipeline.wire import codec_for

T = TypeVar("T")
_JSON = msgspec.json.Encoder(order="deterministic")
_LINES = msgspec.json.Decoder(dict[str, Any])


class StageContext:
    def __init__(
        self,
        *,
        contract: StageContract,
        config: BaseModel,
        run_id: str,
        partition: str,
        attempt: int,
        artifacts: ArtifactStore,
        upstream: dict[tuple[str, str], Manifest],
        ingested: dict[str, PartitionIngested],
        partitions: tuple[str, ...],
        on_progress: Callable[[int], None] | None = None,
        run_position: int | None = None,
    ) -> None:
        self.contract = contract
        self.stage = contract.name
        self.config = config
        self.run_id = run_id
        self.partition = partition
        self.attempt = attempt
        self.partitions = partitions  # every partition of the task (one, or the sealed run's)
        self.run_position = run_position  # log position of the run's RunOpened: orders runs (serve)
        self.log = logging.LoggerAdapter(logging.getLogger(f"stagebus.stage.{self.stage}"),
                                         {"run_id": run_id, "partition": partition})
        self._artifacts = artifacts
        self._upstream = upstream
        self._ingested = ingested
        self._on_progress = on_progress
        self._pending: dict[str, PendingFile] = {
            name: artifacts.pending(name) for name in [*contract.outputs, REJECTS]
        }
        self.records_in = 0
        self.records_rejected = 0
        self.journaled = False  # whether the task keeps an item journal (removed once it completes)

    # --- inputs ---------------------------------------------------------------------------

    def scratch_file(self) -> Path:
        """A path (not created) for a temp file of this attempt, e.g. a stage's spill file, in the
        artifact store's temp directory: the sweep removes one a crashed attempt leaves behind."""
        return self._artifacts.tmp_dir / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}.part"

    @property
    def artifact_root(self) -> Path:
        """The artifact store's root, for stages that publish outside it (serve's served database)."""
        return self._artifacts.root

    @property
    def ingested(self) -> PartitionIngested:
        """The producer's event for this task's partition (partition-scoped tasks only)."""
        if self.partition == RUN_SCOPE:
            raise ContractError(f"stage {self.stage!r} is run-level: use ctx.partitions and ctx.read")
        return self._ingested[self.partition]

    def source_path(self, partition: str | None = None) -> Path:
        """The raw file a producer published for a partition."""
        event = self._ingested[partition or self.partition]
        parsed = urlparse(event.uri)
        if parsed.scheme not in ("file", ""):
            raise InvalidInput(f"unsupported partition URI {event.uri!r}")
        return Path(unquote(parsed.path))

    def upstream_artifact(self, stage: str, output: str, partition: str | None = None) -> Artifact:
        return self._upstream_output(stage, output, partition)[1]

    def _upstream_output(self, stage: str, output: str, partition: str | None) -> tuple[Manifest, Artifact]:
        if not self.contract.reads_output(stage, output):
            raise ContractError(f"stage {self.stage!r} reads {stage}.{output}, which its contract does not declare")
        key = (stage, partition or (self.partition if (stage, self.partition) in self._upstream else RUN_SCOPE))
        manifest = self._upstream.get(key)
        if manifest is None:
            raise ContractError(f"stage {self.stage!r} has no upstream manifest for {key}")
        for artifact in manifest.artifacts:
            if artifact.name == output:
                return manifest, artifact
        raise ContractError(f"upstream stage {stage!r} declared no output {output!r}")

    def artifact_path(self, stage: str, output: str, partition: str | None = None) -> Path:
        """The path of an upstream object, checked in full (size and sha256) before it is returned,
        for consumers that must open it themselves (SQLite). Streaming readers use :meth:`open`."""
        manifest, artifact = self._upstream_output(stage, output, partition)
        path = self._artifacts.path(artifact)
        verify_artifact(path, artifact, origin=_origin(manifest))
        return path

    def open(self, stage: str, output: str, partition: str | None = None) -> VerifiedReader:
        """A binary reader of an upstream object that verifies its sha256 as it is read: reading
        to the end raises :class:`~stagebus.errors.ArtifactCorrupted` on a mismatch."""
        manifest, artifact = self._upstream_output(stage, output, partition)
        return VerifiedReader(self._artifacts.path(artifact), artifact, origin=_origin(manifest))

    def read(self, stage: str, output: str, partition: str | None = None) -> Iterator[dict[str, Any]]:
        """Records of an upstream output, in order; counted as this task's records in.

        Verified while read: the last record is followed by a check of the whole object's sha256,
        and a mismatch raises :class:`~stagebus.errors.ArtifactCorrupted` (the task then fails
        without a manifest). A stage that stops reading early has read an unverified prefix."""
        with self.open(stage, output, partition) as reader:
            for line in reader.stream:
                self.records_in += 1
                try:
                    record = _LINES.decode(line)
                except msgspec.DecodeError:
                    reader.drain()  # a tampered object reports as such, not as a bad line
                    raise
                yield record
            reader.finish()

    def count_in(self, n: int = 1) -> None:
        self.records_in += n

    def records_total(self) -> int:
        """Records this task took in: those counted in, or, for a stage that counts no inputs,
        the records it wrote plus those it rejected (what a quality policy's ratio is over)."""
        if self.records_in:
            return self.records_in
        return sum(p.records for name, p in self._pending.items() if name != REJECTS) + self.records_rejected

    # --- outputs --------------------------------------------------------------------------

    def emit(self, output: str, record: dict[str, Any] | BaseModel) -> None:
        """Validate a record against the output's declared schema and write it."""
        schema = self.contract.outputs.get(output)
        if schema is None or self.contract.is_file(output):
            raise ContractError(f"stage {self.stage!r} declared no record output {output!r}")
        try:
            line = codec_for(schema).encode_line(record)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ContractError(f"stage {self.stage!r} output {output!r}: {where}: {err['msg']}") from None
        self._write(output, line)

    def reject(self, record: Any, error: str, index: int | None = None) -> None:
        """Keep a record that failed, with its error, in the ``rejects`` artifact."""
        self._write(REJECTS, _JSON.encode({"index": index, "error": error, "record": record}) + b"\n")

    def output_path(self, output: str) -> Path:
        """Where to write a file output (declared with :class:`FileOutput`); published atomically."""
        if output not in self.contract.outputs or not self.contract.is_file(output):
            raise ContractError(f"stage {self.stage!r} declared no file output {output!r}")
        return self._pending[output].path

    def _write(self, output: str, line: bytes) -> None:
        pending = self._pending[output]
        pending.write(line)
        pending.records += 1
        if output == REJECTS:
            self.records_rejected += 1

    # --- long stages ----------------------------------------------------------------------

    def items(self, iterable: Iterable[T], key: Callable[[T], str]) -> Iterator[T]:
        """Yield items not yet done; each item's outputs are committed durably once it completes.

        A retried attempt after a crash keeps what finished items wrote and skips them, judged
        from the journal on disk, not from memory (see :mod:`stagebus.pipeline.journal`). What
        the stage writes before its first item must be the same in every attempt.
        """
        journal = ItemJournal(self._artifacts.work_dir(self.run_id, self.stage, self.partition))
        self.journaled = True
        try:
            journal.adopt(self._pending)
            self.records_rejected = self._pending[REJECTS].records
            for item in iterable:
                item_key = key(item)
                if journal.done(item_key):
                    continue
                yield item
                journal.commit(item_key, self._pending)
                self.progress()
        finally:
            journal.close()

    def progress(self, n: int = 1) -> None:
        if self._on_progress is not None:
            self._on_progress(n)

    # --- the executor's side --------------------------------------------------------------

    def publish(self) -> tuple[tuple[Artifact, ...], StageMetrics]:
        artifacts = tuple(self._pending[name].publish() for name in sorted(self._pending))
        out = sum(a.records for a in artifacts if a.name != REJECTS)
        return artifacts, StageMetrics(records_in=self.records_in, records_out=out,
                                       records_rejected=self.records_rejected)

    def discard(self) -> None:
        for pending in self._pending.values():
            pending.discard()

    def set_aside_rejects(self) -> None:
        """Keep this failed attempt's rejects in its work directory (``rejects.jsonl``, described
        by ``rejects.json``) so ``stagebus rejects`` can show why it failed; the other outputs are
        discarded as usual. Used when a quality policy fails the task."""
        keep_rejects(self._artifacts, self.run_id, self.stage, self.partition, self._pending[REJECTS])


FAILED_REJECTS = "rejects.jsonl"  # in a task's work directory: the rejects of its failed attempt
FAILED_REJECTS_INFO = "rejects.json"  # their Artifact (sha256, size, records), written after them


def keep_rejects(artifacts: ArtifactStore, run_id: str, stage: str, partition: str, pending: PendingFile) -> None:
    work = artifacts.work_dir(run_id, stage, partition)
    kept = pending.keep_at(work / FAILED_REJECTS)
    info = work / FAILED_REJECTS_INFO
    tmp = info.with_name(f".{FAILED_REJECTS_INFO}.tmp")
    tmp.write_bytes(_JSON.encode(kept))
    os.replace(tmp, info)


def failed_rejects(artifacts: ArtifactStore, run_id: str, stage: str, partition: str) -> Artifact | None:
    """The rejects a failed attempt of the task kept (see :meth:`StageContext.set_aside_rejects`), or None."""
    info = artifacts.work_dir(run_id, stage, partition) / FAILED_REJECTS_INFO
    try:
        return msgspec.json.decode(info.read_bytes(), type=Artifact)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except msgspec.DecodeError as exc:
        raise ArtifactCorrupted(f"{info} cannot be read: {exc}") from None


def _origin(manifest: Manifest) -> str:
    """Which task produced an upstream object, for an integrity error's advice."""
    source = manifest.reused_from or manifest.run_id
    return f"stage {manifest.stage!r}, partition {manifest.partition!r} of run {source}"
