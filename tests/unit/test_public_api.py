"""stagebus has one public face: the names in ``stagebus.__all__``. Users, the README and the
examples import from ``stagebus`` only; the subpackages are the implementation."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import stagebus

ROOT = Path(__file__).resolve().parents[2]


def _isort_order(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_imports_are_exported() -> None:
    # Given every public name the package binds that is not a subpackage or module
    public = {name for name, value in vars(stagebus).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    # Then __all__ names exactly those, once each, sorted
    assert set(stagebus.__all__) == public
    assert len(stagebus.__all__) == len(set(stagebus.__all__))
    assert stagebus.__all__ == sorted(stagebus.__all__, key=_isort_order)


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
