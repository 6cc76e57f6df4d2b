"""Every Redis key and SQLite table name stagebus uses, in one place."""

from __future__ import annotations

# SQLite: the event log file
LOG_FILE = "log.db"
EVENTS_TABLE = "events"

# SQLite: the projections (one directory per home, also for a Redis log). Each rebuild is a new
# generation file "<generation>.db"; CURRENT names the live one and is swapped by atomic rename.
PROJECTIONS_DIR = "projections"
PROJECTIONS_CURRENT = "CURRENT"
PROJECTIONS_LOCK = ".lock"
PROJECTION_META_TABLE = "projection_meta"
CHECKPOINTS_TABLE = "checkpoints"
LEDGER_TABLE = "partition_ledger"
LEDGER_RUNS_TABLE = "ledger_runs"
LEDGER_PROGRESS_TABLE = "ledger_progress"
LEDGER_HISTORY_TABLE = "ledger_history"
MANIFESTS_TABLE = "manifests"
RUNS_TABLE = "runs"
RUN_PARTITIONS_TABLE = "run_partitions"
STAGE_TASKS_TABLE = "stage_tasks"
PIPELINES_TABLE = "pipelines"


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
        self.worker_heartbeats = f"{prefix}:workers"  # hash: "host:pid" -> heartbeat (see actors.heartbeat)

# SQLite: projections of the HTTP service (stagebus api)
API_KEYS_TABLE = "api_keys"
API_PIPELINES_TABLE = "api_pipelines"
API_BATCHES_TABLE = "api_batches"
