"""Dramatiq wiring: one actor per stage, its own queue named after the stage.

The broker is a transport, never the source of truth: everything an actor decides, it decides
from the log (gate, duplicate check) and records in the log (started, manifest, failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dramatiq
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from stagebus.actors.executor import PERMANENT_ERRORS, Executor, Outcome
from stagebus.actors.failures import classify, describe, infrastructure_backoff_s
from stagebus.actors.gate import TaskRef
from stagebus.errors import InvalidInput, StoreUnavailable
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.store.urls import redact_url, require_host

log = logging.getLogger("stagebus.actors")
LOG_OUTAGE_PAUSE_S = 1.0
INFRA_OPTION = "stagebus_infra"  # infrastructure faults in a row, carried by a re-sent message
INFRA_MIN_BACKOFF_S = 2.0


def make_broker(url: str) -> Broker:
    """``memory`` (in-process), ``redis://…``/``rediss://…`` or ``amqp://…``."""
    if url in ("memory", "memory://", "stub"):
        broker: Broker = StubBroker()
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        require_host(url, "broker")
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url)
    elif url.startswith(("amqp://", "amqps://")):
        require_host(url, "broker")
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker
        except ModuleNotFoundError:  # pika comes with the extra
            raise InvalidInput("an amqp:// broker needs the 'amqp' extra: pip install 'stagebus[amqp]'") from None

        broker = RabbitmqBroker(url=url)
    else:
        raise InvalidInput(f"unknown broker URL {redact_url(url)!r}: use memory, redis://… or amqp://…")
    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())
    return broker


def actor_name(stage: str) -> str:
    return f"stage_{stage}"


def stage_message(task: TaskRef, pipeline: str, *, attempts_before: int = 0) -> Message:  # type: ignore[type-arg]
    """The message that runs ``task`` on its stage's queue, for senders that declare no actors
    (the fleet relay). ``attempts_before`` counts earlier attempts that died without a word, so
    the next one is numbered after them and the retry policy still bounds them all."""
    options = {"retries": attempts_before} if attempts_before else {}
    return Message(queue_name=task.stage, actor_name=actor_name(task.stage),
                   args=(task.run_id, task.partition, pipeline), kwargs={}, options=options)


class StageActors:
    """Declares the stage actors on a broker and sends stage tasks to them."""

    def __init__(self, broker: Broker, executor: Executor, pipelines: PipelineRegistry) -> None:
        self.broker = broker
        self.executor = executor
        self.pipelines = pipelines
        self.actors: dict[str, dramatiq.Actor] = {}  # type: ignore[type-arg]
        self.on_outcome: Callable[[TaskRef, Outcome], None] | None = None
        self.log_outage_wait_s = 0.0  # how long a task waits out an unreachable log (fleet: 60 s)
        # Fleet: a task stopped by an infrastructure fault sends itself again after a backoff,
        # its retry count untouched. Embedded (False): it ends WAITING and the runner decides.
        self.resend_on_infrastructure = False
        for pipeline in pipelines:
            self._declare(pipeline)

    def _declare(self, pipeline: Pipeline) -> None:
        for definition in pipeline.stages:
            name = definition.name
            if name in self.actors:
                continue
            contract = definition.contract
            self.actors[name] = dramatiq.actor(
                broker=self.broker,
                actor_name=actor_name(name),
                queue_name=name,
                max_retries=contract.retry.max_retries,
                min_backoff=contract.retry.min_backoff_ms,
                max_backoff=contract.retry.max_backoff_ms,
                time_limit=int(contract.time_limit_s * 1000),
                throws=PERMANENT_ERRORS,
            )(self._handler(name))

    def _handler(self, stage: str):  # type: ignore[no-untyped-def]
        def run_stage(run_id: str, partition: str, pipeline: str) -> None:
            message = CurrentMessage.get_current_message()
            retries = message.options.get("retries", 0) if message else 0
            max_retries = self.pipelines.get(pipeline)[stage].contract.retry.max_retries
            task = TaskRef(run_id, stage, partition)
            try:
                outcome = self._execute(task, pipeline, attempt=retries + 1, final=retries >= max_retries)
            except Exception as exc:
                if classify(exc) != "infrastructure":
                    raise  # data errors fail at once (throws=), others spend a Dramatiq retry
                outcome = self._wait_on_infrastructure(task, message, exc)
            if self.on_outcome is not None:
                self.on_outcome(task, outcome)

        run_stage.__name__ = actor_name(stage)
        return run_stage

    def _execute(self, task: TaskRef, pipeline: str, *, attempt: int, final: bool) -> Outcome:
        # An unreachable log is not the stage's failure, and failing the message then may lose
        # it (the broker is often the same Redis, down too) while the log still says "running"
        # under a live worker. So the worker waits for the log and runs the task again: the
        # executor's duplicate check makes that safe, and the attempt stays truly in flight.
        deadline = time.monotonic() + self.log_outage_wait_s
        while True:
            try:
                return self.executor.execute(task, pipeline, attempt=attempt, final=final)
            except StoreUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("task %s waits for the log: %s", task, exc)
                time.sleep(LOG_OUTAGE_PAUSE_S)

    def _wait_on_infrastructure(self, task: TaskRef, message: Message | None, exc: Exception) -> Outcome:  # type: ignore[type-arg]
        if self.resend_on_infrastructure and message is not None:
            faults = int(message.options.get(INFRA_OPTION, 0)) + 1
            delay = infrastructure_backoff_s(faults, INFRA_MIN_BACKOFF_S)
            log.warning("task %s waits on infrastructure (%s); trying again in %.0fs", task, describe(exc), delay)
            # If this send fails too (the broker is down with the log), the relay sends it again.
            self.broker.enqueue(message.copy(options={**message.options, INFRA_OPTION: faults}),
                                delay=int(delay * 1000))
        return Outcome.WAITING

    def send(self, task: TaskRef, pipeline: str, *, attempts_before: int = 0) -> None:
        if task.stage not in self.actors:
            raise InvalidInput(f"no actor for stage {task.stage!r}")
        self.broker.enqueue(stage_message(task, pipeline, attempts_before=attempts_before))

    @property
    def queues(self) -> list[str]:
        return list(self.actors)
