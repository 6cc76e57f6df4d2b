"""Help text reads as prose: a paragraph is never broken where its docstring was wrapped, no reST
markup shows, and flags are not labelled ``<bool>``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from stagebus.cli import app


def command_paths() -> Iterator[tuple[tuple[str, ...], str]]:
    """Every command's argv path and its help as written in the source."""
    def walk(command: typer.core.TyperCommand | typer.core.TyperGroup, path: tuple[str, ...]) -> Iterator[
            tuple[tuple[str, ...], str]]:
        yield path, command.help or ""
        if isinstance(command, typer.core.TyperGroup):  # commands load on first use: ask the group
            context = typer.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None, name
                yield from walk(sub, (*path, name))  # type: ignore[arg-type]
    yield from walk(typer.main.get_command(app), ())  # type: ignore[arg-type]


PATHS = list(command_paths())


def render(*args: str) -> str:
    done = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "400", "TERM": "dumb"})
    assert done.exit_code == 0, done.output
    return done.output


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p, _ in PATHS}
    assert {"", "publish", "run", "state inspect", "log verify", "runs abandon", "pipeline show"} <= names


@pytest.mark.parametrize(("path", "source"), PATHS, ids=[" ".join(p) or "stagebus" for p, _ in PATHS])
def test_help_is_prose(path: tuple[str, ...], source: str) -> None:
    shown = render(*path)
    lines = [" ".join(line.strip(" │").split()) for line in shown.splitlines()]
    # Then each paragraph of the docstring is one line on a wide terminal, whatever its source wrapping
    for paragraph in re.split(r"\n\s*\n", source.strip()):
        words = [re.sub(r"[`:~]|\b(class|func|meth|data|mod)\b", "", w) for w in paragraph.split()]
        first, last = words[0], words[-1]
        assert any(line.startswith(first) and line.endswith(last) for line in lines if first in line), (
            f"paragraph broken in `stagebus {' '.join(path)} --help`: {paragraph[:60]!r}…")
    # And no markup or bool labels show
    assert "``" not in shown and not re.search(r":(class|func|meth|data):", shown)
    assert "<bool>" not in shown
    usage = next(line for line in shown.splitlines() if "Usage:" in line)
    assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # RUN_ID, not {run_id}
    assert "-h" in shown
