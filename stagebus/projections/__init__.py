"""Projections: state rebuilt from the event log, kept in SQLite.

Every process that needs projections keeps them in a local SQLite file under
``<home>/projections/`` and catches up from the log, also when the log is in Redis: projections
are a cache of the log, so they need no sharing, and SQLite gives each process fast local reads
and transactional checkpoints. A fleet thus has one projections directory per machine (or per
home), each rebuilt from the same log into the same state. See :mod:`.generations` for how a
rebuild swaps files, :mod:`.runner` for checkpointed catch-up, :mod:`.replay` for rebuilds.
"""

from stagebus.projections.base import Projection
from stagebus.projections.ledger import STATUSES, LedgerChange, LedgerEntry, PartitionLedger
from stagebus.projections.manifests import ManifestIndex, StageRollup
from stagebus.projections.pipelines import PipelineLifecycle, PipelineState
from stagebus.projections.reader import Projections
from stagebus.projections.replay import ReplayResult, VerifyResult
from stagebus.projections.runner import BATCH_SIZE, ProjectionDB, builtin_projections
from stagebus.projections.runs import IngestedPartition, RunInfo, RunsProjection, RunState, StageSummary, TaskState

__all__ = [
    "BATCH_SIZE",
    "STATUSES",
    "IngestedPartition",
    "LedgerChange",
    "LedgerEntry",
    "ManifestIndex",
    "PartitionLedger",
    "PipelineLifecycle",
    "PipelineState",
    "Projection",
    "ProjectionDB",
    "Projections",
    "ReplayResult",
    "RunInfo",
    "RunState",
    "RunsProjection",
    "StageRollup",
    "StageSummary",
    "TaskState",
    "VerifyResult",
    "builtin_projections",
]
