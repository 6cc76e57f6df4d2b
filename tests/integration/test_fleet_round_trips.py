"""What a fleet stage task costs the Redis log in round trips, once its process knows the run:
one lookup (duplicate check and gate together), its StageStarted and its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis

from stagebus.actors.executor import Executor, Outcome
from stagebus.actors.gate import TaskRef
from stagebus.artifacts.local import ArtifactStore
from stagebus.events import PartitionIngested, RunOpened
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.store.redis import RedisEventStore


class CountingRedis(fakeredis.FakeRedis):
    """Counts requests: each command, script call or pipeline is one round trip to a server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.requests += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            return execute(*args, **kwargs)

        pipe.execute = counted
        return pipe


def noop(ctx: StageContext) -> None:
    pass


PIPELINE = Pipeline("two", [stage("first")(noop), stage("second", after=["first"])(noop)])  # type: ignore[arg-type]


def test_a_task_costs_the_log_three_round_trips_once_its_run_is_known(tmp_path: Path) -> None:
    # Given a Redis log with a run of two partitions, and a worker that has run both first tasks
    client = CountingRedis()
    store = RedisEventStore(client)
    store.append([RunOpened(run_id="r", pipeline="two", plan=PIPELINE.plan()),
                  *(PartitionIngested(run_id="r", dataset="d", partition=p, uri="file:///x", content_hash=p, size=1)
                    for p in ("p0", "p1"))])
    executor = Executor(store, ArtifactStore(tmp_path), PipelineRegistry([PIPELINE]))
    for p in ("p0", "p1"):
        assert executor.execute(TaskRef("r", "first", f"d/{p}"), "two") is Outcome.COMPLETE
    # When it runs a second-stage task
    client.requests = 0
    assert executor.execute(TaskRef("r", "second", "d/p0"), "two") is Outcome.COMPLETE
    # Then the log saw one lookup, the StageStarted and the manifest
    assert client.requests == 3
    # And a duplicate delivery of it is answered by one lookup
    client.requests = 0
    assert executor.execute(TaskRef("r", "second", "d/p0"), "two") is Outcome.DUPLICATE
    assert client.requests == 1
