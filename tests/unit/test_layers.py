"""Layers point one way: ``events`` ← ``store`` ← ``projections`` ← ``artifacts`` ← ``pipeline``
← ``actors`` ← ``stages`` ← ``producer``, ``consumer``, ``warehouse``, ``cli``, ``api``. A module may
import its own layer and those below it, never one above (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import stagebus

PACKAGE = Path(stagebus.__file__).parent
LAYERS = {
    "errors": 0, "events": 0, "store": 1, "settings": 1, "projections": 2, "artifacts": 3,
    "pipeline": 4, "actors": 5, "stages": 6, "producer": 7, "consumer": 7, "cli": 7,
    "api": 7, "warehouse": 7,
}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_no_import_runs_back_up() -> None:
    upward: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the public face re-exports from every layer
        own = LAYERS[parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("stagebus.") and LAYERS[_room(name)] > own:
                    upward.append(f"{'/'.join(parts)} imports {name}")
    assert upward == []
