"""The consumer contract: read what the ledger vouches for, from one log position.

A consumer trusts the ledger only. :func:`read` opens a home read-only (it changes no file),
fixes one log position (the projections' checkpoint after catching up, or ``as_of``), takes the
ledger *as of that position* from its history, and yields the records of the dataset's ``valid``
partitions at their authoritative run, each artifact verified against its manifest's sha256 as
it is read. Rows of the history and manifests never change once written, so the snapshot stays
consistent while producers and workers go on appending. :func:`changes` lists what changed
since a position a consumer saw. docs/consumers.md is the contract in words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import msgspec

from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.location import open_artifacts
from stagebus.artifacts.store import ArtifactStore
from stagebus.errors import InvalidInput
from stagebus.events import Artifact, partition_ref
from stagebus.projections import LedgerChange, LedgerEntry, Projections
from stagebus.settings import Settings
from stagebus.store import open_store

_LINE = msgspec.json.Decoder()


class Changes(NamedTuple):
    """What changed after the position asked for, and the position read up to: pass that as
    ``after`` next time to see only newer changes."""

    position: int
    changes: list[LedgerChange]


class Snapshot:
    """The valid partitions of a dataset as of one log position, and their records.

    Iterate for every record (partitions in ledger order, records in artifact order), or use
    :meth:`records` for one partition. A record is a dict as its stage emitted it (for the
    default ``normalize.records``: ``{"index": row number, "record": {...}}``). A corrupted
    artifact raises :class:`~stagebus.errors.ArtifactCorrupted` when its end is reached.
    """

    def __init__(self, projections: Projections, artifacts: ArtifactStore, dataset: str, position: int,
                 partitions: list[LedgerEntry], stage: str, output: str) -> None:
        self.dataset = dataset
        self.position = position
        self.partitions = partitions
        self.stage, self.output = stage, output
        self._projections = projections
        self._artifacts = artifacts

    def artifact(self, entry: LedgerEntry) -> Artifact:
        """The output artifact of ``entry``'s partition at its authoritative run."""
        assert entry.run_id is not None  # valid rows always name their run
        manifest = self._projections.manifest(entry.run_id, self.stage, partition_ref(entry.dataset, entry.partition))
        if manifest is None:
            raise InvalidInput(f"run {entry.run_id} has no {self.stage!r} manifest for {entry.partition!r}: "
                               f"is {self.stage!r} a partition stage of its pipeline?")
        for artifact in manifest.artifacts:
            if artifact.name == self.output:
                return artifact
        names = ", ".join(a.name for a in manifest.artifacts) or "none"
        raise InvalidInput(f"stage {self.stage!r} has no output {self.output!r} (it wrote: {names})")

    def records(self, entry: LedgerEntry) -> Iterator[dict[str, Any]]:
        """One partition's records, verified: the last is followed by the sha256 check."""
        artifact = self.artifact(entry)
        with VerifiedReader(self._artifacts.path(artifact), artifact) as reader:
            for line in reader.stream:
                yield _LINE.decode(line)
            reader.finish()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for entry in self.partitions:
            yield from self.records(entry)

    def close(self) -> None:
        self._projections.close()
        self._projections.store.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read(dataset: str, *, as_of: int | None = None, output: str = "normalize.records",
         home: str | Path | None = None, store: str | None = None) -> Snapshot:
    """The records of ``dataset``'s valid partitions at their authoritative runs, from one log
    position (the newest, or ``as_of``), read-only::

        with stagebus.read("airports", home="/data/stagebus") as snapshot:
            for row in snapshot:
                ...
            seen = snapshot.position  # later: stagebus.changes("airports", after=seen)

    ``output`` is ``"stage.output"``. Raises :class:`~stagebus.errors.InvalidInput` for an
    unknown dataset, a malformed output or a position outside the log.
    """
    stage, _, name = output.partition(".")
    if not stage or not name:
        raise InvalidInput(f"output {output!r} must be STAGE.OUTPUT, e.g. normalize.records")
    settings = _settings(home, store)
    projections = _open(settings)
    try:
        position = _position(projections, as_of)
        entries = projections.ledger_as_of(position, dataset=dataset)
        if not entries:
            raise InvalidInput(f"no dataset {dataset!r} in the ledger as of position {position}")
        valid = [e for e in entries if e.status == "valid"]
        artifacts = open_artifacts(settings, create=False)
    except BaseException:
        projections.close()
        projections.store.close()
        raise
    return Snapshot(projections, artifacts, dataset, position, valid, stage, name)


def changes(dataset: str, *, after: int = 0, home: str | Path | None = None, store: str | None = None) -> Changes:
    """Partitions of ``dataset`` that became valid, were replaced (valid at another run) or became
    invalid after log position ``after``, in log order, and the position read up to."""
    projections = _open(_settings(home, store))
    try:
        position = _position(projections, None)
        if after < 0 or after > position:
            raise InvalidInput(f"after={after} is outside the log (positions 0 to {position})")
        return Changes(position, projections.changes(dataset, after=after, until=position))
    finally:
        projections.close()
        projections.store.close()


def _settings(home: str | Path | None, store: str | None) -> Settings:
    given: dict[str, object] = {}
    if home is not None:
        given["home"] = Path(home)
    if store is not None:
        given["store"] = store
    return Settings(**given)  # type: ignore[arg-type]


def _open(settings: Settings) -> Projections:
    log = open_store(settings.store_url, readonly=True)
    root = None if log.url == "memory://" else settings.projections_path
    projections = Projections(log, root, readonly=True)
    projections.catch_up()
    return projections


def _position(projections: Projections, as_of: int | None) -> int:
    head = projections.checkpoint()
    if as_of is None:
        return head
    if as_of < 0 or as_of > head:
        raise InvalidInput(f"as_of={as_of} is outside the log (positions 0 to {head})")
    return as_of
