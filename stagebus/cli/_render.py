"""Output for people (rich tables, progress) and for machines (JSON), in one place."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

PROGRESS_FROM = 10_000  # events: below this a replay is over before a bar would help

_JSON = msgspec.json.Encoder(order="deterministic")
_JSON_AS_BUILT = msgspec.json.Encoder()  # keeps a dict's own key order


def stdout() -> Console:
    return Console(soft_wrap=False)


def print_json(data: Any) -> None:
    """A JSON document on stdout, indented for people who read it too."""
    sys.stdout.write(msgspec.json.format(_JSON.encode(data), indent=2).decode() + "\n")


def print_json_line(data: Any) -> None:
    """One compact JSON document per line (NDJSON), keys in the order the dict was built."""
    sys.stdout.write(_JSON_AS_BUILT.encode(data).decode() + "\n")


def table(*columns: str, caption: str | None = None) -> Table:
    grid = Table(caption=caption, caption_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    return grid


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that draws a bar on stderr once the work is long enough to need one."""
    bar: Progress | None = None
    task = None

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if total < PROGRESS_FROM:
                return
            console = Console(stderr=True)
            # On a terminal the bar vanishes when done; in a log file it stays as one final line.
            bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           console=console, transient=console.is_terminal)
            bar.start()
            task = bar.add_task(label, total=total)
        assert task is not None
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()
