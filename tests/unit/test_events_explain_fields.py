"""PlannedStage.config and StageFailed.traceback: new optional fields, so old logs still decode."""

from __future__ import annotations

from stagebus.actors.executor import bounded_traceback
from stagebus.events import RunOpened, StageFailed, decode, encode
from stagebus.events.types import TRACEBACK_BYTES
from stagebus.pipeline.registry import load_pipelines


def test_payloads_written_before_the_fields_existed_decode_with_defaults() -> None:
    # Given payloads as stagebus wrote them before config and traceback existed
    opened = b'{"type":"run_opened","event_id":"e1","run_id":"r","pipeline":"p",' \
             b'"plan":[{"name":"ingest","after":[],"scope":"partition","config_hash":"h"}]}'
    failed = b'{"type":"stage_failed","event_id":"e2","run_id":"r","stage":"ingest","partition":"d/p",' \
             b'"attempt":1,"error_type":"KeyError","message":"sku","final":true}'
    # Then they decode, the new fields at their defaults
    run = decode(opened, type_name="run_opened", version=1)
    assert isinstance(run, RunOpened) and run.plan[0].config == {}
    failure = decode(failed, type_name="stage_failed", version=1)
    assert isinstance(failure, StageFailed) and failure.traceback == ""


def test_the_plan_carries_each_stages_config_values_and_round_trips() -> None:
    pipeline = load_pipelines("").get("reference")
    plan = pipeline.plan()
    assert all(s.config == pipeline.configs[s.name].model_dump(mode="json") for s in plan)
    assert any(s.config for s in plan)
    event = RunOpened(run_id="r", pipeline=pipeline.name, plan=plan)
    assert decode(encode(event)) == event


def test_a_traceback_is_bounded_to_its_innermost_frames() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("innermost " + "x" * 100)
        deep(n - 1)

    try:
        deep(300)
    except ValueError as exc:
        text = bounded_traceback(exc)
    assert len(text.encode()) <= TRACEBACK_BYTES
    assert text.rstrip().endswith("x" * 100) and "ValueError: innermost" in text
