"""``load``: a dataset's valid partitions, from one log position, into a warehouse table.

The consumer contract gives a snapshot (:func:`stagebus.read`): the valid partitions at their
authoritative runs, records verified. Each partition's load is keyed by the log position of the
ledger change that made it valid at that run. Positions grow with authority — a newer run that
replaces a partition does so at a later position, an older run finishing late changes nothing
in the ledger — so "load only over a smaller position" gives: a duplicate delivery (same
position) does nothing, a newer run replaces the rows, an older snapshot never overwrites a
newer one. :meth:`~stagebus.warehouse.targets.Target.replace_partition` applies that rule in
one transaction per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pydantic

from stagebus.consumer import Snapshot, changes, read
from stagebus.errors import InvalidInput
from stagebus.projections import LedgerEntry
from stagebus.warehouse import columns as _columns
from stagebus.warehouse.targets import Action, Outcome, PartitionLoad, Target, check_target, open_target

Progress = Callable[[int, int], None]  # (partitions done, partitions to do)


class PartitionResult(NamedTuple):
    partition: str
    run_id: str
    position: int  # of the ledger change that made the partition valid at run_id
    action: Action  # loaded | already_loaded | newer_loaded
    rows: int  # written (loaded), or already in the table by the tracking row
    tracked_run_id: str | None  # the run whose rows the table holds after this load


class LoadResult(NamedTuple):
    dataset: str
    table: str
    target: str  # the target's URL, password masked
    output: str
    position: int  # the snapshot's log position
    partitions: list[PartitionResult]

    @property
    def rows_loaded(self) -> int:
        return sum(p.rows for p in self.partitions if p.action == "loaded")

    def count(self, action: Action) -> int:
        return sum(1 for p in self.partitions if p.action == action)


def load(dataset: str, to: str | Target, table: str, *, output: str = "normalize.records",
         schema: type[pydantic.BaseModel] | None = None, as_of: int | None = None,
         home: str | Path | None = None, store: str | None = None, progress: Progress | None = None,
         partitions: Collection[str] | None = None) -> LoadResult:
    """Load ``dataset``'s valid partitions (all, or those named in ``partitions``) as of log
    position ``as_of`` (default: the newest) into ``table`` of the warehouse ``to``
    (``postgresql://…``, ``sqlite:///PATH`` or an open :class:`Target`), one transaction per
    partition. Columns come from ``schema`` (a pydantic model of a record's fields, every record
    validated against it) or are inferred from the records to load. Safe to repeat and to run
    concurrently: each partition's rows are replaced at most once per position.

    Raises :class:`~stagebus.errors.InvalidInput` for an unknown dataset or output, a bad table
    name, or a table with other columns; :class:`~stagebus.errors.WarehouseError` when the
    target cannot be reached or fails mid-load (the partition in flight is left as it was).
    """
    if isinstance(to, str):
        check_target(to, table)  # bad input is refused before anything is read or connected to
    with read(dataset, as_of=as_of, output=output, home=home, store=store) as snapshot:
        target = open_target(to) if isinstance(to, str) else to
        try:
            return _load(snapshot, target, table, schema, home, store, progress, partitions)
        finally:
            if isinstance(to, str):
                target.close()


def _load(snapshot: Snapshot, target: Target, table: str, schema: type[pydantic.BaseModel] | None,
          home: str | Path | None, store: str | None, progress: Progress | None,
          only: Collection[str] | None) -> LoadResult:
    entries = _chosen(snapshot, only)
    loads = _partition_loads(snapshot, entries, home, store)
    tracked = target.tracked(table)
    pending = [(entry, plan) for entry, plan in zip(entries, loads, strict=True)
               if tracked.get(plan.partition, ("", -1))[1] < plan.position]
    columns: list[_columns.Column] = []
    if pending:
        columns = _columns_for(snapshot, [entry for entry, _ in pending], schema)
        target.prepare(table, columns)
    results = []
    for done, (entry, plan) in enumerate(zip(entries, loads, strict=True), start=1):
        rows = _columns.rows(snapshot.records(entry), columns, plan.partition, plan.run_id, schema)
        outcome = target.replace_partition(table, columns, plan, rows)
        rows.close()  # not consumed when the partition was already loaded: release the artifact
        results.append(PartitionResult(plan.partition, plan.run_id, plan.position, outcome.action, outcome.rows,
                                       outcome.tracked_run_id))
        if progress is not None:
            progress(done, len(entries))
    return LoadResult(snapshot.dataset, table, target.url, f"{snapshot.stage}.{snapshot.output}", snapshot.position,
                      results)


def _chosen(snapshot: Snapshot, only: Collection[str] | None) -> list[LedgerEntry]:
    if only is None:
        return list(snapshot.partitions)
    valid = {e.partition for e in snapshot.partitions}
    missing = sorted(set(only) - valid)
    if missing:
        raise InvalidInput(f"partition(s) {', '.join(map(repr, missing))} of {snapshot.dataset!r} are not valid "
                           f"as of position {snapshot.position}")
    return [e for e in snapshot.partitions if e.partition in only]


def _partition_loads(snapshot: Snapshot, entries: list[LedgerEntry], home: str | Path | None,
                     store: str | None) -> list[PartitionLoad]:
    """Each entry with the position of the ledger change that made it valid at its run: the
    last ``valid``/``replaced`` change of the partition at or before the snapshot's position
    (history rows never change, so a later read of the changes agrees with the snapshot)."""
    made_valid: dict[str, tuple[int, str | None]] = {}
    for change in changes(snapshot.dataset, after=0, home=home, store=store).changes:
        if change.position <= snapshot.position and change.change in ("valid", "replaced"):
            made_valid[change.partition] = (change.position, change.run_id)
    loads = []
    for entry in entries:
        position, run_id = made_valid.get(entry.partition, (None, None))
        if position is None or run_id != entry.run_id:  # the ledger's history and rows disagree: a bug
            raise InvalidInput(f"partition {entry.partition!r}: no ledger change made it valid at run {entry.run_id}")
        assert entry.run_id is not None
        loads.append(PartitionLoad(snapshot.dataset, entry.partition, entry.run_id, snapshot.stage, snapshot.output,
                                   position, snapshot.artifact(entry).sha256))
    return loads


def _columns_for(snapshot: Snapshot, entries: list[LedgerEntry],
                 schema: type[pydantic.BaseModel] | None) -> list[_columns.Column]:
    if schema is not None:
        first = next(_records(snapshot, entries), None)
        return _columns.from_model(schema, indexed=first is not None and _columns.is_indexed(first))
    return _columns.infer(_records(snapshot, entries))


def _records(snapshot: Snapshot, entries: list[LedgerEntry]) -> Iterator[dict[str, Any]]:
    for entry in entries:
        yield from snapshot.records(entry)


def load_partition(target: Target, table: str, plan: PartitionLoad, records: Callable[[], Iterator[dict[str, Any]]],
                   schema: type[pydantic.BaseModel] | None = None) -> Outcome:
    """Load one partition's records (``records()`` opens them; it may be called twice: once to
    infer the columns, once to copy) under ``plan``'s position, as :func:`load` does for each
    partition. Columns come from this partition alone. What a stage uses
    (:func:`~stagebus.warehouse.stage.warehouse_stage`)."""
    columns: list[_columns.Column] = []
    tracked = target.tracked(table).get(plan.partition)
    if tracked is None or tracked[1] < plan.position:
        if schema is not None:
            first = next(records(), None)
            columns = _columns.from_model(schema, indexed=first is not None and _columns.is_indexed(first))
        else:
            columns = _columns.infer(records())
        target.prepare(table, columns)
    rows = _columns.rows(records(), columns, plan.partition, plan.run_id, schema)
    try:
        return target.replace_partition(table, columns, plan, rows)
    finally:
        rows.close()
