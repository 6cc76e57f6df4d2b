"""The run page's plan graph: columns by depth, so fan-out and fan-in show, one edge per upstream."""

from __future__ import annotations

import re

from stagebus.api.inspector.dag import depths, plan_svg, stage_state
from stagebus.events import PlannedStage

DIAMOND = (PlannedStage(name="load"), PlannedStage(name="left", after=("load",)),
           PlannedStage(name="right", after=("load",)),
           PlannedStage(name="join", after=("left", "right"), scope="run"))


def summary(stage: str, **counts: int) -> dict[str, object]:
    return {"stage": stage, "selected": True, "expected": 2, "complete": 0, "reused": 0, "running": 0, "failed": 0,
            **counts}


def test_a_diamond_is_drawn_in_three_columns_with_four_edges() -> None:
    assert depths(DIAMOND) == {"load": 0, "left": 1, "right": 1, "join": 2}
    svg = plan_svg(DIAMOND, [summary("load", complete=2), summary("left", failed=1), summary("right", running=1),
                             summary("join")])
    edges = re.findall(r'data-from="(\w+)" data-to="(\w+)"', svg)
    assert edges == [("load", "left"), ("load", "right"), ("left", "join"), ("right", "join")]
    states = dict((s, c) for c, s in re.findall(r'<g class="stage (\w+)" data-stage="(\w+)"', svg))
    assert states == {"load": "complete", "left": "failed", "right": "running", "join": "pending"}
    xs = {name: int(x) for name, x in re.findall(r'data-stage="(\w+)"><rect x="(\d+)"', svg)}
    assert xs["load"] < xs["left"] == xs["right"] < xs["join"]
    assert "join (run)" in svg


def test_names_are_escaped_and_a_stage_not_run_is_skipped() -> None:
    plan = (PlannedStage(name="<b>"),)
    svg = plan_svg(plan, [summary("<b>", selected=False)])
    assert 'data-stage="&lt;b&gt;"' in svg and ">&lt;b&gt;</text>" in svg and "<b>" not in svg
    assert stage_state(summary("x", selected=False)) == "skipped"
