"""stagebus: an event-sourced pipeline-stage orchestrator.

This module is the public API: ``from stagebus import stage, Pipeline, open_producer, read``. The
subpackages are the implementation, layered one way — ``events`` ← ``store`` ←
``projections`` ← ``artifacts``/``pipeline`` ← ``actors`` ← ``stages`` ← ``cli`` — and may
change without notice.

Names are imported on first use (PEP 562): ``import stagebus.cli`` (every command) then pays only
for what the command needs, not for the HTTP service, the warehouse and the reference stages.
"""

import importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

_HOMES = {
    "stagebus.api.processors": ("RecordRejected", "processor"),
    "stagebus.consumer": ("Changes", "Snapshot", "changes", "read"),
    "stagebus.errors": ("ContractError", "InvalidInput", "PermanentStageError", "PipelineError", "StagebusError",
                        "StoreError", "StoreUnavailable", "WarehouseError"),
    "stagebus.pipeline": ("FileOutput", "Pipeline", "RetryPolicy", "StageContext", "StageDefinition", "stage"),
    "stagebus.producer": ("Producer", "PublishResult", "open_producer"),
    "stagebus.stages": ("REFERENCE_STAGES", "build_reference_pipeline"),
    "stagebus.warehouse": ("LoadResult", "load", "warehouse_stage"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> _typing.Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stagebus' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
