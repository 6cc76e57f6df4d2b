"""A warehouse load as a pipeline stage: the rows in the table, the load in the log with its
manifest, and a newer run's load replacing an older one's (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.errors import ContractError
from stagebus.pipeline.definition import Pipeline
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from stagebus.warehouse import warehouse_stage
from support import toy
from support.warehouse import query, run_toy, scratch_database

TARGETS = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


@pytest.fixture(params=TARGETS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty warehouse, named to the stage by STAGEBUS_LOAD_DSN as a worker's environment would."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        monkeypatch.setenv("STAGEBUS_LOAD_DSN", url)
        yield url
        return
    with scratch_database() as dsn:
        monkeypatch.setenv("STAGEBUS_LOAD_DSN", dsn)
        yield dsn


def pipeline() -> Pipeline:
    loader = warehouse_stage("warehouse", after=["double"], reads="double.numbers", table="doubled")
    return Pipeline("toy-warehouse", [toy.load, toy.double, loader], version="1")


def manifest(home: Path, run_id: str, partition: str) -> tuple[int, int]:
    """records_in and the loads artifact's record count of the warehouse stage's manifest."""
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        projections = Projections(store, home / "projections", readonly=True)
        projections.catch_up()
        found = projections.manifest(run_id, "warehouse", f"nums/{partition}")
        projections.close()
    assert found is not None
    [loads] = [a for a in found.artifacts if a.name == "loads"]
    return found.metrics.records_in, loads.records


def test_a_load_stage_writes_the_rows_and_a_manifest_with_their_count(warehouse: str, tmp_path: Path) -> None:
    # Given a pipeline whose last stage loads double's output / When a run of two partitions runs
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": toy_numbers(1, 2, 3), "b": toy_numbers(5)}, pipeline())
    # Then the table holds the doubled numbers, and each partition's manifest counts its rows
    assert sorted(query(warehouse, "SELECT _partition, _run_id, n FROM doubled")) == [
        ("a", "r1", 2), ("a", "r1", 4), ("a", "r1", 6), ("b", "r1", 10)]
    assert manifest(home, "r1", "a") == (3, 1)
    assert manifest(home, "r1", "b") == (1, 1)


def test_a_newer_run_of_the_pipeline_replaces_the_partition_it_loads(warehouse: str, tmp_path: Path) -> None:
    # Given r1 loaded a and b / When r2 brings a new a
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": toy_numbers(1, 2, 3), "b": toy_numbers(5)}, pipeline())
    run_toy(home, "r2", {"a": toy_numbers(7)}, pipeline())
    # Then a is r2's rows only, b stays r1's, and the tracking table says so
    assert sorted(query(warehouse, "SELECT _partition, _run_id, n FROM doubled")) == [
        ("a", "r2", 14), ("b", "r1", 10)]
    assert sorted(query(warehouse, "SELECT partition, run_id, rows FROM stagebus_loads")) == [
        ("a", "r2", 1), ("b", "r1", 1)]


def test_a_load_stage_must_read_an_upstream_output() -> None:
    with pytest.raises(ContractError, match=r"must be STAGE\.OUTPUT of a stage in after"):
        warehouse_stage("warehouse", after=["double"], reads="load.numbers", table="t")
    with pytest.raises(ContractError, match=r"is not NAME or SCHEMA\.NAME"):
        warehouse_stage("warehouse", after=["double"], reads="double.numbers", table="bad name")


def toy_numbers(*values: int) -> list[dict[str, int]]:
    return [{"n": v} for v in values]
