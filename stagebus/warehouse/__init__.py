"""Warehouse loads: a dataset's valid records into PostgreSQL or SQLite, with an exactly-once
effect over at-least-once delivery (docs/warehouse.md)::

    from stagebus.warehouse import load
    result = load("airports", "postgresql://loader@db/analytics", "airports", home="/data/stagebus")
"""

from stagebus.warehouse.columns import Column
from stagebus.warehouse.load import LoadResult, PartitionResult, load, load_partition
from stagebus.warehouse.stage import LoadReport, warehouse_stage
from stagebus.warehouse.targets import TRACKING_TABLE, PartitionLoad, SqliteTarget, Target, open_target

__all__ = [
    "TRACKING_TABLE",
    "Column",
    "LoadReport",
    "LoadResult",
    "PartitionLoad",
    "PartitionResult",
    "SqliteTarget",
    "Target",
    "load",
    "load_partition",
    "open_target",
    "warehouse_stage",
]
