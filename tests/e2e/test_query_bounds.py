"""``stagebus query`` bounds what it is asked: too many words or too long a query is refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.stages.query import MAX_QUERY_CHARS, MAX_QUERY_TERMS


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    source = home.parent / "tea.csv"
    source.write_text("id,name\n1,green tea\n2,black tea\n")
    assert stagebus(home, "publish", "--dataset", "d", "--partition", "p", "--file", str(source),
                    "--seal").exit_code == 0
    done = stagebus(home, "run")
    assert done.exit_code == 0, done.stderr
    return home


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("text", "says"), [
    (" ".join(f"w{i}" for i in range(5000)), f"at most {MAX_QUERY_CHARS} characters"),
    (" ".join(["tea"] * (MAX_QUERY_TERMS + 1)), f"at most {MAX_QUERY_TERMS} words"),
    ("t" * (MAX_QUERY_CHARS + 1), f"at most {MAX_QUERY_CHARS} characters"),
])
def test_an_oversized_query_is_one_line_with_exit_2(served: Path, text: str, says: str) -> None:
    # When a query with too many words, or too many characters, is asked of a served index
    result = stagebus(served, "query", text)
    # Then it is refused at once with one line saying the bound
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: query ") and says in lines[0]


def test_a_query_at_the_bounds_is_answered(served: Path) -> None:
    # Given a query of exactly the maximum number of words
    result = stagebus(served, "query", " ".join(["tea"] * MAX_QUERY_TERMS), "--format", "json")
    # Then it is searched
    assert result.exit_code == 0, result.stderr
    assert '"green tea"' in result.stdout
