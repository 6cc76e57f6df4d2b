"""Every Redis key and SQLite table name stagebus uses, in one place."""

from __future__ import annotations

# SQLite: the event log file
LOG_FILE = "log.db"
EVENTS_TABLE = "events"

# SQLite: the projections file (one per home, also for a Redis log)
PROJECTIONS_FILE = "projections.db"
CHECKPOINTS_TABLE = "checkpoints"
LEDGER_TABLE = "partition_ledger"
MANIFESTS_TABLE = "manifests"
RUNS_TABLE = "runs"
RUN_STAGES_TABLE = "run_stages"
STAGE_TASKS_TABLE = "stage_tasks"


class RedisKeys:
    """Keys of one event log in Redis. The ``{ns}`` hash tag keeps a log on one Cluster slot."""

    def __init__(self, namespace: str = "stagebus") -> None:
        self.namespace = namespace
        prefix = f"{{{namespace}}}"
        self.stream = f"{prefix}:log"  # the events, stream id "<position>-1"
        self.keys = f"{prefix}:keys"  # hash: event key -> position
        self.head = f"{prefix}:head"  # hash: position, hash of the last event
        self.relay_lease = f"{prefix}:relay:lease"
        self.relay_fence = f"{prefix}:relay:fence"
