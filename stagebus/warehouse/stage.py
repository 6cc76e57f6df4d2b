"""A warehouse load as a stage of a pipeline: the load appears in the log, with a manifest.

``warehouse_stage`` makes a partition stage that reads an upstream output and loads the
partition's records into a table, in the same one-transaction-per-partition way as
``stagebus load`` (:func:`~stagebus.warehouse.load.load_partition`). Inside a run the
partition is not valid yet (this stage is part of what makes it valid), so the load is keyed by
the position of the run's ``RunOpened``, which is how the ledger orders runs: a newer run's
load replaces an older one's, an older run's late attempt changes nothing, and a retry after a
crash between the warehouse commit and the manifest finds its tracking row and only writes the
manifest. The manifest's ``loads`` output holds one record (table, rows, action, position) and
``records_in`` is the number of rows in the table for the partition.

The warehouse URL comes from the worker's environment (``STAGEBUS_LOAD_DSN`` by default), never
from the stage's config: configs are recorded in the log, and a password must not be.
Keep a table to one kind of loader — this stage, or the command — since they key by different
positions. Put the stage last: a later failure would leave rows of a partition the ledger calls
invalid (as ``stagebus load`` does for a partition a newer run fails; see docs/warehouse.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import pydantic

from stagebus.errors import ContractError, InvalidInput
from stagebus.events import split_partition_ref
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import RetryPolicy, StageDefinition, stage
from stagebus.warehouse.load import load_partition
from stagebus.warehouse.targets import PartitionLoad, check_target, open_target, split_table

DSN_ENV = "STAGEBUS_LOAD_DSN"


class LoadReport(pydantic.BaseModel):
    """The record a load stage emits for its partition."""

    table: str
    partition: str
    run_id: str
    position: int  # of the run's RunOpened: the load's key
    action: str  # loaded | already_loaded | newer_loaded
    rows: int  # rows of the partition in the table after the load
    tracked_run_id: str | None


def warehouse_stage(name: str = "load", *, after: Sequence[str], table: str, reads: str = "normalize.records",
                    schema: type[pydantic.BaseModel] | None = None, dsn_env: str = DSN_ENV, version: str = "1",
                    retry: RetryPolicy | None = None) -> StageDefinition:
    """A partition stage named ``name`` that loads ``reads`` (``STAGE.OUTPUT``, a stage in
    ``after``) into ``table`` of the warehouse named by the environment variable ``dsn_env``.
    The table is the stage config's ``table`` (so a pipeline's config may override it). Raises
    :class:`ContractError` for a malformed ``reads`` or table name."""
    upstream, _, output = reads.partition(".")
    if not upstream or not output or upstream not in after:
        raise ContractError(f"stage {name!r}: reads={reads!r} must be STAGE.OUTPUT of a stage in after={list(after)}")
    try:
        split_table(table, schemas=True)
    except InvalidInput as exc:
        raise ContractError(f"stage {name!r}: {exc}") from None
    config = pydantic.create_model("WarehouseLoadConfig", table=(str, table))

    def run_load(ctx: StageContext) -> None:
        url = os.environ.get(dsn_env)
        if not url:
            raise InvalidInput(f"stage {name!r}: set {dsn_env} to the warehouse URL (postgresql://… or sqlite:///…)")
        target_table = ctx.config.table  # type: ignore[attr-defined]
        check_target(url, target_table)
        dataset, partition = split_partition_ref(ctx.partition)
        assert ctx.run_position is not None  # an open gate always looked it up
        plan = PartitionLoad(dataset, partition, ctx.run_id, upstream, output, ctx.run_position,
                             ctx.upstream_artifact(upstream, output).sha256)
        with open_target(url) as target:
            outcome = load_partition(target, target_table, plan, lambda: _records(ctx, upstream, output), schema)
        ctx.count_in(outcome.rows)  # the partition's rows in the table, however many passes read them
        ctx.emit("loads", LoadReport(table=target_table, partition=partition, run_id=ctx.run_id,
                                     position=plan.position, action=outcome.action, rows=outcome.rows,
                                     tracked_run_id=outcome.tracked_run_id))

    run_load.__doc__ = f"Load {reads} into the warehouse table {table} (URL from ${dsn_env})."
    return stage(name, after=list(after), outputs={"loads": LoadReport}, config=config, reads=[reads],
                 reusable=False, version=version, retry=retry)(run_load)


_LINE = msgspec.json.Decoder()


def _records(ctx: StageContext, stage_name: str, output: str) -> Iterator[dict[str, Any]]:
    """The upstream records, verified like ``ctx.read`` but not counted: the load reads them
    twice (columns, then rows) and counts the rows it leaves in the table instead."""
    with ctx.open(stage_name, output) as reader:
        for line in reader.stream:
            yield _LINE.decode(line)
        reader.finish()
