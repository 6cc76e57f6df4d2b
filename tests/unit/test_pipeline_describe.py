"""`pipeline show` and `pipeline check`: contracts a reviewer reads, and what a change breaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from stagebus import REFERENCE_STAGES, ContractError, Pipeline, stage
from stagebus.artifacts.local import ArtifactStore
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.describe import compare, dag_lines, describe
from stagebus.stages import reference_pipeline

STAGEBUS = str(Path(sys.executable).parent / "stagebus")
TESTS = Path(__file__).resolve().parents[1]


class Item(BaseModel):
    sku: str
    cents: int


class ItemV2(BaseModel):  # cents retyped, sku dropped, note added
    cents: str
    note: str = ""


class Total(BaseModel):
    cents: int


def _pipeline(item: type[BaseModel], *, total_after: tuple[str, ...] = ("items",), config: int = 1) -> Pipeline:
    @stage("items", outputs={"items": item, "extra": Total})
    def items(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    @stage("total", after=list(total_after), reads=["items.items"], outputs={"total": Total})
    def total(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    @stage("audit", after=["items"], reads=["items.extra"], version=str(config))
    def audit(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    return Pipeline("shop", [items, total, audit])


def test_show_names_reads_gates_schemas_and_manifest_paths() -> None:
    # Given the reference pipeline / When described
    stages = {s["stage"]: s for s in describe(reference_pipeline)["stages"]}
    # Then each stage says what it reads, when it may start and what its manifest holds
    assert stages["index"]["reads"] == ["normalize.records", "link.record_links"]
    assert "sealed" in stages["link"]["entry"] and "same run_id and partition" in stages["normalize"]["entry"]
    assert "rejects" in stages["extract"]["exit"] and stages["serve"]["reusable"] is False
    assert set(stages["normalize"]["outputs"]["records"]["schema"]["properties"]) == {"index", "record"}
    assert stages["normalize"]["config_schema"]["properties"] and stages["ingest"]["retry"]["max_retries"] == 3
    assert stages["ingest"]["manifest_path"].startswith("runs/{run_id}/{stage}/{dataset}/{partition}")


def test_a_stage_off_normalize_is_drawn_off_normalize() -> None:
    # Given a user stage after normalize (it once showed on the main chain)
    @stage("prices", after=["normalize"])
    def prices(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    lines = dag_lines(Pipeline("shop", [*REFERENCE_STAGES, prices]))
    # Then it hangs under normalize beside extract, and the fan-in says what else it waits for
    assert lines == ["ingest", "└─ normalize", "   ├─ extract", "   │  └─ link", "   ├─ prices",
                     "   └─ index  (also after link)", "      └─ serve"]


def test_check_flags_what_breaks_a_reader_and_lists_the_rest() -> None:
    old = _pipeline(Item)
    # When the items output drops sku and retypes cents (both read by total), audit's version moves
    changes = compare(old, _pipeline(ItemV2, config=2))
    verdicts = {(c.stage, c.what.split(":")[0]): c.severity for c in changes}
    # Then the drop and the retype are incompatible, naming the reader; the rest is compatible
    assert verdicts[("items", "output 'items' drops field 'sku' (read by total)")] == "incompatible"
    assert verdicts[("items", "output 'items' retypes field 'cents'")] == "incompatible"
    assert verdicts[("items", "output 'items' adds field 'note'")] == "compatible"
    assert verdicts[("audit", "config or version changed")] == "compatible"
    # And an unchanged pipeline has no changes
    assert compare(old, _pipeline(Item)) == []


def test_check_flags_removed_stages_outputs_and_changed_after() -> None:
    @stage("items", outputs={"items": Item})  # "extra" removed
    def items(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    @stage("total", outputs={"total": Total})  # no longer after items; audit removed
    def total(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    changes = compare(_pipeline(Item), Pipeline("shop", [items, total]))
    assert {(c.stage, c.what) for c in changes if c.severity == "incompatible"} == {
        ("audit", "stage removed"), ("items", "output 'extra' removed"),
        ("total", "after changed: ['items'] -> []"),
    }


def test_reads_must_name_an_upstream_output_and_bind_at_run_time(tmp_path: Path) -> None:
    @stage("a", outputs={"x": Total})
    def a(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    @stage("b", after=["a"], reads=["a.nope"])
    def b(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    # Given a read of an output a does not declare / Then the pipeline is refused at definition
    with pytest.raises(ContractError, match=r"reads 'a\.nope'"):
        Pipeline("p", [a, b])

    @stage("c", after=["a"], reads=["a.x"])
    def c(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    # And a stage that reads what it did not declare fails the task at once (a contract error)
    ctx = StageContext(contract=c.contract, config=Pipeline("p", [a, c]).configs["c"], run_id="r",
                       partition="d/p", attempt=1, artifacts=ArtifactStore(tmp_path), upstream={}, ingested={},
                       partitions=("d/p",))
    with pytest.raises(ContractError, match="does not declare"):
        next(ctx.read("a", "rejects"))


def test_cli_show_json_and_check_exit_codes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "STAGEBUS_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([STAGEBUS, *args], capture_output=True, text=True, env=env, timeout=120)

    shown = json.loads(cli("pipeline", "show", "reference", "--format", "json").stdout)
    assert [s["stage"] for s in shown["stages"]][:2] == ["ingest", "normalize"]
    # Given a changed pipeline that breaks a reader / Then check exits 1 and names it
    broken = cli("pipeline", "check", "unit.test_pipeline_describe:broken", "--against",
                 "unit.test_pipeline_describe:current", "--format", "json")
    assert broken.returncode == 1 and any(c["severity"] == "incompatible" for c in json.loads(broken.stdout))
    same = cli("pipeline", "check", "unit.test_pipeline_describe:current", "--against",
               "unit.test_pipeline_describe:current")
    assert same.returncode == 0 and "no changes" in same.stdout
    # And a changed pipeline with no known pipeline of its name needs --against: one line, exit 2
    alone = cli("pipeline", "check", "unit.test_pipeline_describe:current")
    assert alone.returncode == 2 and "give --against" in alone.stderr
    assert not (tmp_path / "home").exists()  # reading contracts creates no state


def current() -> Pipeline:
    return _pipeline(Item)


def broken() -> Pipeline:
    return _pipeline(ItemV2)
