"""A run's plan drawn as a graph: inline SVG made on the server, so the page needs no script.

Stages go in columns by depth (the longest path from a stage with no upstream), in plan order
within a column; an edge runs from each upstream stage to the stage that waits for it, so fan-out
(one stage feeding several) and fan-in (one waiting for several, or a run-level stage reading
every partition) show as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from stagebus.events import PlannedStage

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 54, 56, 18, 8
COLORS = {"complete": "#d9f2dd", "failed": "#f8d7da", "running": "#fff3cd", "pending": "#eef0f3",
          "skipped": "#f6f6f6"}


def depths(plan: Sequence[PlannedStage]) -> dict[str, int]:
    """Each stage's column: 0 for a stage with no upstream, else one more than its deepest upstream."""
    known = {s.name for s in plan}
    out: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in out:
            return out[name]
        stage = next(s for s in plan if s.name == name)
        ups = [u for u in stage.after if u in known and u not in seen]
        out[name] = 0 if not ups else 1 + max(depth(u, seen | {name}) for u in ups)
        return out[name]

    for s in plan:
        depth(s.name, frozenset())
    return out


def stage_state(summary: Mapping[str, Any]) -> str:
    """The colour a stage's box gets from its row of ``describe_run``'s stages."""
    if not summary.get("selected", True):
        return "skipped"
    if summary["failed"]:
        return "failed"
    if summary["expected"] and summary["complete"] + summary["reused"] >= summary["expected"]:
        return "complete"
    if summary["running"] or summary["complete"] or summary["reused"]:
        return "running"
    return "pending"


def plan_svg(plan: Sequence[PlannedStage], stages: Sequence[Mapping[str, Any]]) -> str:
    """The SVG markup (escaped) of the plan, each box coloured by its stage's state and labelled
    with done/expected and failures."""
    by_name = {s["stage"]: s for s in stages}
    column = depths(plan)
    rows: dict[int, list[str]] = {}
    for s in plan:
        rows.setdefault(column[s.name], []).append(s.name)
    at: dict[str, tuple[int, int]] = {}
    for col, names in rows.items():
        for row, name in enumerate(names):
            at[name] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(rows, default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(n) for n in rows.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    parts = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="plan of the run">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#667"/></marker></defs>']
    for s in plan:
        x2, y2 = at[s.name]
        for up in s.after:
            if up not in at:
                continue
            x1, y1 = at[up]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H // 2, x2, y2 + BOX_H // 2
            mid = (sx + ex) // 2
            parts.append(f'<path class="edge" d="M {sx} {sy} C {mid} {sy}, {mid} {ey}, {ex} {ey}" fill="none" '
                         f'stroke="#667" stroke-width="1.4" marker-end="url(#arrow)" '
                         f'data-from="{escape(up)}" data-to="{escape(s.name)}"/>')
    for s in plan:
        x, y = at[s.name]
        summary = by_name.get(s.name)
        state = stage_state(summary) if summary else "pending"
        done = f"{summary['complete'] + summary['reused']}/{summary['expected']}" if summary else ""
        failed = f" · {summary['failed']} failed" if summary and summary["failed"] else ""
        scope = " (run)" if s.scope == "run" else ""
        parts.append(
            f'<g class="stage {state}" data-stage="{escape(s.name)}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{COLORS[state]}" '
            f'stroke="#556" stroke-width="1"/>'
            f'<text class="name" x="{x + 10}" y="{y + 21}">{escape(s.name)}{escape(scope)}</text>'
            f'<text x="{x + 10}" y="{y + 41}" font-size="12">{escape(done)}{escape(failed)} · {state}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
