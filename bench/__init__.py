"""Benchmarks that compare stagebus against a raw baseline measured in the same run.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> dict`` and is listed
in :data:`bench.__main__.BENCHMARKS`. Figures are ratios ours/raw, so that they mean the same on
a laptop and on a CI runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

T = TypeVar("T")
Trial = tuple[Callable[[], Any], Callable[[Any], object]]


def best_rate(count: int, setup: Callable[[], T], work: Callable[[T], object]) -> float:
    """Events/second of one ``work(setup())`` run; ``setup`` is not timed."""
    target = setup()
    started = time.perf_counter()
    work(target)
    return count / (time.perf_counter() - started)


def compare(count: int, ours: Trial, raw: Trial, repeats: int) -> tuple[float, float]:
    """Best events/second of ours and of the raw baseline, each a ``(setup, work)`` pair.

    Runs alternate, so that a change in machine load during the run hits both sides alike.
    """
    best_ours = best_raw = 0.0
    for _ in range(repeats):
        best_ours = max(best_ours, best_rate(count, *ours))
        best_raw = max(best_raw, best_rate(count, *raw))
    return best_ours, best_raw


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < 2 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console().print(table)
