"""stagebus: an event-sourced pipeline-stage orchestrator.

This module is the public API: ``from stagebus import stage, Pipeline, open_producer, read``. The
subpackages are the implementation, layered one way — ``events`` ← ``store`` ←
``projections`` ← ``artifacts``/``pipeline`` ← ``actors`` ← ``stages`` ← ``cli`` — and may
change without notice.
"""

from stagebus.api.processors import RecordRejected, processor
from stagebus.consumer import Changes, Snapshot, changes, read
from stagebus.errors import (
    ContractError,
    InvalidInput,
    PermanentStageError,
    PipelineError,
    StagebusError,
    StoreError,
    StoreUnavailable,
    WarehouseError,
)
from stagebus.pipeline import FileOutput, Pipeline, RetryPolicy, StageContext, StageDefinition, stage
from stagebus.producer import Producer, PublishResult, open_producer
from stagebus.stages import REFERENCE_STAGES, build_reference_pipeline
from stagebus.warehouse import LoadResult, load, warehouse_stage

__version__ = "0.1.0"
__all__ = [
    "REFERENCE_STAGES",
    "Changes",
    "ContractError",
    "FileOutput",
    "InvalidInput",
    "LoadResult",
    "PermanentStageError",
    "Pipeline",
    "PipelineError",
    "Producer",
    "PublishResult",
    "RecordRejected",
    "RetryPolicy",
    "Snapshot",
    "StageContext",
    "StageDefinition",
    "StagebusError",
    "StoreError",
    "StoreUnavailable",
    "WarehouseError",
    "build_reference_pipeline",
    "changes",
    "load",
    "open_producer",
    "processor",
    "read",
    "stage",
    "warehouse_stage",
]
