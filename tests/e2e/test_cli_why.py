"""``stagebus runs``, ``runs show``, ``why`` and what ``run`` says after a failure, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.cli._context import AppContext
from stagebus.cli._runner import remaining_by_stage
from stagebus.pipeline.registry import load_pipelines
from stagebus.settings import Settings

TOY = "tests.support.toy:toy_pipeline"
TOY_FACTOR3 = "tests.support.why_toy:factor3"


def stagebus(home: Path, *args: str, pipelines: str = TOY) -> Result:
    return CliRunner(env={"STAGEBUS_PIPELINES": pipelines}).invoke(app, ["--home", str(home), *args])


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), result.stderr
    return lines[0]


def publish(home: Path, tmp: Path, run_id: str, partition: str, lines: list[dict], pipelines: str = TOY) -> None:
    path = tmp / f"{run_id}-{partition}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = stagebus(home, "publish", "--pipeline", "toy", "--dataset", "nums", "--partition", partition,
                      "--file", str(path), "--run-id", run_id, "--seal", pipelines=pipelines)
    assert result.exit_code == 0, result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """r1: nums/a done with factor 2; r2: nums/a again with factor 3; r3: nums/b, poisoned in load."""
    home = tmp_path / "home"
    publish(home, tmp_path, "r1", "a", [{"n": 1}, {"n": 2}])
    assert stagebus(home, "run").exit_code == 0
    publish(home, tmp_path, "r2", "a", [{"n": 1}, {"n": 2}], pipelines=TOY_FACTOR3)
    assert stagebus(home, "run", pipelines=TOY_FACTOR3).exit_code == 0
    return home


def why(home: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = stagebus(home, "why", *args, "--format", "json", pipelines=TOY_FACTOR3)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_why_names_reuse_and_the_config_field_that_changed(home: Path) -> None:
    # When asked why nums/a is as it is (the ledger's run: r2)
    answer = why(home, "nums/a")
    facts = {f["stage"]: f for f in answer["facts"] if f["stage"]}
    # Then load was reused from r1 (same input and config), double ran again because factor changed
    assert answer["status"] == "valid" and answer["run_id"] == "r2"
    assert facts["load"]["kind"] == "reused" and "run r1" in facts["load"]["text"]
    assert "same input and config hash" in facts["load"]["text"]
    assert facts["double"]["kind"] == "executed"
    assert facts["double"]["details"]["config_changes"] == {"factor": {"old": 2, "new": 3}}
    assert "factor: 2 -> 3" in facts["double"]["text"]
    # And every fact rests on log positions
    assert all(f["positions"] for f in answer["facts"])
    # And the table names the positions too; --stage narrows to one stage
    table = stagebus(home, "why", "nums/a", pipelines=TOY_FACTOR3)
    assert table.exit_code == 0 and "log #" in table.stdout and "factor: 2 -> 3" in table.stdout
    only = why(home, "nums/a", "--stage", "double")
    assert [f["stage"] for f in only["facts"] if f["stage"]] == ["double"]
    # And an older run can be explained with --run
    first = why(home, "nums/a", "--run", "r1")
    assert {f["stage"]: f["kind"] for f in first["facts"] if f["stage"]}["load"] == "executed"


def test_a_failure_is_explained_blocked_downstream_and_resumable(home: Path, tmp_path: Path) -> None:
    # Given a partition whose load step fails for good
    publish(home, tmp_path, "r3", "b", [{"n": 1}, {"act": "poison"}], pipelines=TOY_FACTOR3)
    # When the runner runs it
    ran = stagebus(home, "run", pipelines=TOY_FACTOR3)
    # Then it exits 1 naming what is blocked downstream and the exact command that resumes
    assert ran.exit_code == 1
    assert "blocked downstream in run r3: double x 1, total x 1" in ran.stderr
    assert "stagebus run --run-id r3 --resume-from load" in ran.stderr
    # And why says load failed and double / total are blocked by it
    facts = {f["stage"]: f for f in why(home, "nums/b")["facts"] if f["stage"]}
    assert facts["load"]["kind"] == "failed" and "poisoned record" in facts["load"]["text"]
    assert facts["double"]["kind"] == "blocked" and "upstream stage load failed" in facts["double"]["text"]
    assert facts["total"]["kind"] == "blocked"
    # And runs show keeps the traceback of the final failure
    shown = json.loads(stagebus(home, "runs", "show", "r3", "--format", "json").stdout)
    assert shown["status"] == "failed"
    [failure] = shown["failures"]
    assert failure["stage"] == "load" and "Traceback" in failure["traceback"]
    assert "PermanentStageError: poisoned record" in failure["traceback"]
    assert "Traceback" in stagebus(home, "runs", "show", "r3").stdout
    # And so does the task telemetry line, at the default log level
    lines = [json.loads(x) for x in (home / "logs" / "tasks.ndjson").read_text().splitlines()]
    final = [x for x in lines if x["event"] == "failed" and x.get("final")]
    assert final and "PermanentStageError" in final[-1]["traceback"]
    assert all("ts" in x for x in lines)


def test_tasks_blocked_by_a_failure_and_superseded_runs_get_no_progress_bars(home: Path, tmp_path: Path) -> None:
    # Given r3 failed in load (double and total can never run) and was resumed by a child run
    publish(home, tmp_path, "r3", "b", [{"n": 1}, {"act": "poison"}], pipelines=TOY_FACTOR3)
    assert stagebus(home, "run", pipelines=TOY_FACTOR3).exit_code == 1
    context = AppContext(Settings(home=home))
    registry = load_pipelines(TOY_FACTOR3)
    try:
        # Then nothing is left to draw a bar for
        assert remaining_by_stage(context, registry, None, None) == {}
        # And after a resume opens a child run, the parent draws no bar while the child does
        resumed = stagebus(home, "run", "--run-id", "r3", "--resume-from", "double", pipelines=TOY_FACTOR3)
        assert "resumed run r3" in resumed.stdout
        context.close()
        context = AppContext(Settings(home=home))
        assert remaining_by_stage(context, registry, None, None) == {}
    finally:
        context.close()


def test_runs_lists_filters_and_shows_stage_counts_and_lineage(home: Path) -> None:
    listed = json.loads(stagebus(home, "runs", "--format", "json").stdout)
    assert [(r["run_id"], r["status"], r["partitions"]) for r in listed] == [("r1", "complete", 1),
                                                                             ("r2", "complete", 1)]
    assert json.loads(stagebus(home, "runs", "--status", "failed", "--format", "json").stdout) == []
    assert "r2" in stagebus(home, "runs").stdout
    shown = json.loads(stagebus(home, "runs", "show", "r2", "--format", "json").stdout)
    stages = {s["stage"]: s for s in shown["stages"]}
    assert stages["load"]["reused"] == 1 and stages["double"]["complete"] == 1
    assert stages["double"]["records"] == 2
    # Resume chains: a resumed run names its parent, the parent its child
    resumed = stagebus(home, "run", "--run-id", "r2", "--resume-from", "double", pipelines=TOY_FACTOR3)
    assert resumed.exit_code == 0, resumed.output
    child = json.loads(stagebus(home, "runs", "--format", "json").stdout)[-1]
    assert child["parent_run_id"] == "r2"
    parent = json.loads(stagebus(home, "runs", "show", "r2", "--format", "json").stdout)
    assert parent["child_runs"] == [child["run_id"]]
    facts = {f["stage"]: f for f in why(home, "nums/a", "--run", child["run_id"])["facts"] if f["stage"]}
    assert "before the resume point double" in facts["load"]["text"]
    assert "resume point double" in facts["double"]["text"]


@pytest.mark.parametrize("args", [("runs", "show", "nope"), ("why", "nums/zzz"), ("why", "nums/a", "--run", "nope"),
                                  ("why", "nums/a", "--stage", "nope"), ("why", "nodataset"),
                                  ("runs", "--status", "weird")])
def test_unknown_references_are_one_line_and_exit_2_and_store_nothing(home: Path, args: tuple[str, ...]) -> None:
    before = (home / "log.db").read_bytes()
    result = stagebus(home, *args)
    assert result.exit_code == 2, result.output
    one_error_line(result)
    assert (home / "log.db").read_bytes() == before


def test_runs_abandon_still_works_under_the_group(home: Path) -> None:
    result = stagebus(home, "runs", "abandon", "r1", "--reason", "old")
    assert result.exit_code == 0 and "abandoned run r1" in result.stderr
    listed = json.loads(stagebus(home, "runs", "--status", "abandoned", "--format", "json").stdout)
    assert [r["run_id"] for r in listed] == ["r1"]


def test_why_says_when_a_fact_rests_on_nothing_logged_yet(tmp_path: Path) -> None:
    # Given a sealed partition nothing has run yet
    home = tmp_path / "home"
    publish(home, tmp_path, "r1", "a", [{"n": 1}])
    # When asked why in the table
    shown = stagebus(home, "why", "nums/a")
    # Then the ingestion cites its positions and the ready stage says nothing is logged for it yet
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert any("ingested into run r1" in line and "log #" in line for line in lines)
    assert any("is ready" in line and line.rstrip().endswith("nothing logged yet") for line in lines), shown.stdout
    assert not any(line.rstrip().endswith("log -") for line in lines)
