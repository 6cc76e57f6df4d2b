"""stagebus has one public face: the names in ``stagebus.__all__``. Users, the README and the
examples import from ``stagebus`` only; the subpackages are the implementation."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import stagebus

ROOT = Path(__file__).resolve().parents[2]


def _isort_order(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_imports_are_exported() -> None:
    # Given every name __all__ lists, each resolved (the package imports them on first use)
    resolved = {name: getattr(stagebus, name) for name in stagebus.__all__}
    # Then each is an object of the implementation, none a module, and dir() shows them all
    assert not any(inspect.ismodule(value) for value in resolved.values())
    assert set(stagebus.__all__) <= set(dir(stagebus))
    # And the public names the package binds are exactly those, listed once each, sorted
    public = {name for name, value in vars(stagebus).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    assert set(stagebus.__all__) == public
    assert len(stagebus.__all__) == len(set(stagebus.__all__))
    assert stagebus.__all__ == sorted(stagebus.__all__, key=_isort_order)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        stagebus.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("stagebus.no_such_name resolved")


def test_the_command_line_imports_only_what_a_command_uses() -> None:
    # Given a fresh interpreter that imports the CLI and runs `stagebus --version`
    code = ("import sys\nfrom stagebus.cli import app\nimport typer\n"
            "try:\n    typer.main.get_command(app).main(['--version'], prog_name='stagebus')\n"
            "except SystemExit:\n    pass\nprint(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    # Then neither the HTTP service, the warehouse, the inspector nor the reference stages came along
    assert "stagebus.cli" in loaded
    heavy = {"fastapi", "limits", "jinja2", "psycopg", "boto3", "stagebus.api.processors", "stagebus.warehouse",
             "stagebus.stages", "stagebus.cli.api", "stagebus.cli.ui", "stagebus.cli.load"}
    assert loaded & heavy == set()


def test_the_public_api_authors_and_publishes() -> None:
    # Given only names from `stagebus`, a user stage on top of the reference stages
    @stagebus.stage("tally", after=["normalize"], retry=stagebus.RetryPolicy(max_retries=0))
    def tally(ctx: stagebus.StageContext) -> None:
        ctx.count_in(0)

    pipeline = stagebus.Pipeline("tallies", [*stagebus.REFERENCE_STAGES, tally])
    # Then the pipeline knows its DAG, and the error family is the one the package exports
    assert "tally" in pipeline.downstream("normalize") and "tally" not in pipeline.downstream("extract")
    assert issubclass(stagebus.PipelineError, stagebus.InvalidInput)
    assert issubclass(stagebus.PermanentStageError, stagebus.StagebusError)


def test_docs_and_examples_import_only_the_public_api() -> None:
    # Given every Python line the README, docs/ and examples/ show a user
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py"))]
    internal = re.compile(r"^\s*(from|import)\s+stagebus\.", re.M)
    # Then none imports an implementation module
    offenders = [str(path.relative_to(ROOT)) for path in texts if internal.search(path.read_text())]
    assert offenders == []
