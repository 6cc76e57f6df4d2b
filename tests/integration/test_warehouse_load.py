"""Warehouse loads against the real PostgreSQL of this machine (a database of each test's own)
and the SQLite target: an exactly-once effect over at-least-once delivery.

Homes are filled by the real embedded runner: the toy pipeline (records ``{"n": int}`` from
``load.numbers``) for the load semantics, the reference pipeline through the CLI for the command.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.errors import InvalidInput
from stagebus.warehouse import Column, PartitionLoad, load, load_partition, open_target
from support.warehouse import query, run_toy, scratch_database

OUTPUT = "load.numbers"
TARGETS = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


@pytest.fixture(params=TARGETS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty warehouse: a fresh PostgreSQL database, or a new SQLite file."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with scratch_database() as dsn:
        yield dsn


@pytest.fixture
def postgres() -> Iterator[str]:
    with scratch_database() as dsn:
        yield dsn


def rows_of(url: str, table: str = "nums") -> list[tuple[str, str, int]]:
    return sorted(query(url, f"SELECT _partition, _run_id, n FROM {table}"))


def tracking(url: str) -> list[tuple[str, str, int, int]]:
    return sorted(query(url, "SELECT partition, run_id, position, rows FROM stagebus_loads"))


def recorded_loads(url: str) -> int:
    """Rows of the tracking table, 0 when it does not exist."""
    catalog = ("SELECT count(*) FROM sqlite_master WHERE name = 'stagebus_loads'" if url.startswith("sqlite")
               else "SELECT count(*) FROM pg_tables WHERE tablename = 'stagebus_loads'")
    if query(url, catalog) == [(0,)]:
        return 0
    return int(query(url, "SELECT count(*) FROM stagebus_loads")[0][0])


def numbers(*values: int) -> list[dict[str, int]]:
    return [{"n": v} for v in values]


def test_a_duplicate_delivery_loads_each_row_once(warehouse: str, tmp_path: Path) -> None:
    # Given a home whose two partitions are valid in r1
    home = tmp_path / "home"
    head = run_toy(home, "r1", {"a": numbers(1, 2, 3), "b": numbers(4)})
    # When the same snapshot is delivered twice
    first = load("nums", warehouse, "nums", output=OUTPUT, home=home)
    second = load("nums", warehouse, "nums", output=OUTPUT, home=home)
    # Then the rows are there once, the second load changed nothing, and the tracking table
    # names the run and the position of each partition's load
    assert rows_of(warehouse) == [("a", "r1", 1), ("a", "r1", 2), ("a", "r1", 3), ("b", "r1", 4)]
    assert [p.action for p in first.partitions] == ["loaded", "loaded"] and first.rows_loaded == 4
    assert [p.action for p in second.partitions] == ["already_loaded", "already_loaded"]
    assert second.rows_loaded == 0 and [p.rows for p in second.partitions] == [3, 1]
    assert tracking(warehouse) == [("a", "r1", head, 3), ("b", "r1", head, 1)]


def test_a_newer_run_replaces_only_the_partitions_it_decides(warehouse: str, tmp_path: Path) -> None:
    # Given a and b loaded from r1
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": numbers(1, 2, 3), "b": numbers(4)})
    load("nums", warehouse, "nums", output=OUTPUT, home=home)
    # When r2 makes a new version of a valid and the load runs again
    run_toy(home, "r2", {"a": numbers(10, 11)})
    result = load("nums", warehouse, "nums", output=OUTPUT, home=home)
    # Then a holds r2's rows only, and b is r1's, untouched
    assert rows_of(warehouse) == [("a", "r2", 10), ("a", "r2", 11), ("b", "r1", 4)]
    assert {p.partition: p.action for p in result.partitions} == {"a": "loaded", "b": "already_loaded"}


def test_an_older_run_delivered_after_a_newer_one_never_overwrites_it(warehouse: str, tmp_path: Path) -> None:
    # Given a valid in r1, then replaced by r2, and r2's rows loaded
    home = tmp_path / "home"
    after_r1 = run_toy(home, "r1", {"a": numbers(1, 2, 3)})
    run_toy(home, "r2", {"a": numbers(10, 11)})
    load("nums", warehouse, "nums", output=OUTPUT, home=home)
    # When r1's snapshot arrives late (a delayed delivery of the older run)
    late = load("nums", warehouse, "nums", output=OUTPUT, home=home, as_of=after_r1)
    # Then it is refused for the partition, and the rows stay r2's
    assert [(p.run_id, p.action, p.tracked_run_id) for p in late.partitions] == [("r1", "newer_loaded", "r2")]
    assert rows_of(warehouse) == [("a", "r2", 10), ("a", "r2", 11)]


def test_two_partitions_load_concurrently_and_so_do_two_loaders(warehouse: str, tmp_path: Path) -> None:
    # Given four valid partitions
    home = tmp_path / "home"
    run_toy(home, "r1", {p: numbers(*range(i * 100, i * 100 + 50)) for i, p in enumerate("abcd")})
    barrier = threading.Barrier(4)
    results, errors = [], []

    def loader(partitions: list[str] | None) -> None:
        barrier.wait()
        try:
            results.append(load("nums", warehouse, "nums", output=OUTPUT, home=home, partitions=partitions))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    # When one thread loads a, another b, and two more load every partition, all at once
    threads = [threading.Thread(target=loader, args=(p,)) for p in (["a"], ["b"], None, None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every partition's rows are there exactly once, and each was written by one loader
    assert errors == []
    assert len(rows_of(warehouse)) == 200
    assert sorted(r[0] for r in rows_of(warehouse)) == sorted("abcd" * 50)
    loaded = sorted(p.partition for r in results for p in r.partitions if p.action == "loaded")
    assert loaded == ["a", "b", "c", "d"]


def test_a_table_with_other_columns_is_refused_and_nothing_is_written(warehouse: str, tmp_path: Path) -> None:
    # Given a table nums that already exists with columns of its own
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": numbers(1)})
    _execute(warehouse, "CREATE TABLE nums (_partition TEXT, label TEXT)")
    # When loading into it / Then a clear error names the columns, and no load is recorded
    with pytest.raises(InvalidInput, match=r"table nums exists with other columns.*_run_id \(\w+\) is missing"):
        load("nums", warehouse, "nums", output=OUTPUT, home=home)
    assert query(warehouse, "SELECT count(*) FROM nums") == [(0,)]
    assert recorded_loads(warehouse) == 0


def test_columns_come_from_a_pydantic_schema_when_given(warehouse: str, tmp_path: Path) -> None:
    class Number(BaseModel):
        n: int
        label: str | None = None

    # Given records {"n": int} / When loaded with a schema that also declares an optional label
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": numbers(7)})
    load("nums", warehouse, "nums", output=OUTPUT, home=home, schema=Number)
    # Then the table has the schema's columns, after the load's own
    assert query(warehouse, "SELECT _partition, _run_id, n, label FROM nums") == [("a", "r1", 7, None)]


def test_nested_values_are_json_in_postgres_and_sqlite(warehouse: str) -> None:
    # Given a target and rows with a nested value / When a partition is replaced through the target
    columns = [Column("_partition", "text"), Column("_run_id", "text"), Column("tags", "json"),
               Column("ok", "bool"), Column("score", "float")]
    plan = PartitionLoad("d", "p", "r1", "s", "o", 5, "0" * 64)
    with open_target(warehouse) as target:
        target.prepare("nested", columns)
        outcome = target.replace_partition("nested", columns, plan, iter([("p", "r1", '{"a": [1, 2]}', True, 1.5)]))
    # Then the value reads back as JSON
    assert outcome.action == "loaded" and outcome.rows == 1
    second = ("SELECT tags->'a'->>1, ok, score FROM nested" if warehouse.startswith("postgres")
              else "SELECT json_extract(tags, '$.a[1]'), ok, score FROM nested")
    [(tag, ok, score)] = query(warehouse, second)
    assert (str(tag), bool(ok), score) == ("2", True, 1.5)


def _execute(url: str, statement: str) -> None:
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute(statement)
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


# The command, over a home the reference pipeline filled through the CLI.

def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args], env=env)


@pytest.fixture(scope="module")
def airports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("airports")
    home = tmp / "home"
    for partition, text in {"CA": "code,name\nSFO,San Francisco\nLAX,Los Angeles\n",
                            "NY": "code,name\nJFK,Kennedy\n"}.items():
        path = tmp / f"{partition}.csv"
        path.write_text(text)
        result = cli(home, "publish", "--dataset", "airports", "--partition", partition, "--file", str(path),
                     "--run-id", "r1", *(["--seal"] if partition == "NY" else []))
        assert result.exit_code == 0, result.output
    assert cli(home, "run", "--run-id", "r1").exit_code == 0
    return home


@pytest.mark.postgres
def test_the_command_run_twice_leaves_the_same_rows(airports: Path, postgres: str) -> None:
    # When `stagebus load` runs twice, the second time with the URL from STAGEBUS_LOAD_DSN
    first = cli(airports, "load", "--dataset", "airports", "--table", "airports", "--to", postgres)
    second = cli(airports, "load", "--dataset", "airports", "--table", "airports", "--format", "json",
                 env={"STAGEBUS_LOAD_DSN": postgres})
    # Then both succeed, and the table holds each valid record once, with its row number in the file
    assert first.exit_code == 0, first.output
    assert "loaded 3 row(s) of 2 partition(s) of airports into airports" in first.output
    assert second.exit_code == 0, second.output
    assert '"rows_loaded": 0' in second.output and second.output.count('"already_loaded"') == 2
    assert sorted(query(postgres, "SELECT _partition, _run_id, _index, code, name FROM airports")) == [
        ("CA", "r1", 2, "SFO", "San Francisco"), ("CA", "r1", 3, "LAX", "Los Angeles"),
        ("NY", "r1", 2, "JFK", "Kennedy")]


def test_the_command_loads_into_sqlite_too(airports: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    for _ in range(2):
        assert cli(airports, "load", "--dataset", "airports", "--table", "airports", "--to", url).exit_code == 0
    assert query(url, "SELECT count(*) FROM airports") == [(3,)]


@pytest.mark.parametrize(("url", "code", "says"), [
    ("postgresql://loader:hunter2@127.0.0.1:1/warehouse", 1, "cannot connect to warehouse postgresql://loader:***@"),
    ("postgresql://loader:hunter2@127.0.0.1:port/warehouse", 2, "malformed warehouse URL"),
    ("mysql://loader:hunter2@127.0.0.1/warehouse", 2, "unknown warehouse URL 'mysql://loader:***@"),
])
def test_a_bad_url_is_one_line_with_the_password_masked(airports: Path, url: str, code: int, says: str) -> None:
    result = cli(airports, "load", "--dataset", "airports", "--table", "airports", "--to", url)
    assert result.exit_code == code
    assert result.output.count("\n") == 1 and says in result.output
    assert "hunter2" not in result.output


@pytest.mark.postgres
def test_an_unknown_dataset_or_bad_table_is_refused_before_the_warehouse_changes(airports: Path,
                                                                                 postgres: str) -> None:
    unknown = cli(airports, "load", "--dataset", "runways", "--table", "runways", "--to", postgres)
    bad_table = cli(airports, "load", "--dataset", "airports", "--table", "air ports", "--to", postgres)
    missing = cli(airports, "load", "--dataset", "airports", "--table", "airports", env={"STAGEBUS_LOAD_DSN": ""})
    assert (unknown.exit_code, bad_table.exit_code, missing.exit_code) == (2, 2, 2)
    assert "no dataset 'runways'" in unknown.output and "is not NAME or SCHEMA.NAME" in bad_table.output
    assert "give --to URL or set STAGEBUS_LOAD_DSN" in missing.output
    assert query(postgres, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


@pytest.mark.postgres
def test_a_schema_qualified_table_keeps_its_tracking_table_in_that_schema(postgres: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": numbers(1, 2)})
    for _ in range(2):
        load("nums", postgres, "staging.nums", output=OUTPUT, home=home)
    assert query(postgres, "SELECT count(*) FROM staging.nums") == [(2,)]
    assert query(postgres, "SELECT target_table, partition, rows FROM staging.stagebus_loads") == [("nums", "a", 2)]


def test_another_dataset_is_not_loaded_over_a_partition_of_the_first(warehouse: str, tmp_path: Path) -> None:
    # Given nums/a loaded into table t
    home = tmp_path / "home"
    run_toy(home, "r1", {"a": numbers(1)})
    load("nums", warehouse, "t", output=OUTPUT, home=home)
    with open_target(warehouse) as target:
        other = PartitionLoad("other", "a", "r9", "load", "numbers", 10**6, "0" * 64)
        # When a partition a of another dataset is loaded into t / Then it is refused, t unchanged
        with pytest.raises(InvalidInput, match="holds partition 'a' of dataset 'nums', not 'other'"):
            target.replace_partition("t", [], other, iter([]))
    assert query(warehouse, "SELECT _partition, n FROM t") == [("a", 1)]


def test_a_retry_after_the_commit_finds_its_tracking_row(warehouse: str) -> None:
    # Given a partition loaded under a position (as a load stage does, before its manifest)
    plan = PartitionLoad("nums", "a", "r1", "double", "numbers", 7, "0" * 64)
    with open_target(warehouse) as target:
        first = load_partition(target, "t", plan, lambda: iter([{"n": 1}, {"n": 2}]))
        # When the same task runs again (its process died before the manifest was appended)
        again = load_partition(target, "t", plan, lambda: iter([{"n": 1}, {"n": 2}]))
    # Then the second finds the load done and writes nothing
    assert (first.action, first.rows) == ("loaded", 2)
    assert (again.action, again.rows) == ("already_loaded", 2)
    assert query(warehouse, "SELECT count(*) FROM t") == [(2,)]


def test_without_psycopg_the_command_names_the_extra(airports: Path) -> None:
    # Given psycopg cannot be imported / When loading into PostgreSQL
    hide = "import sys; sys.modules['psycopg'] = None; from stagebus.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", hide, "--home", str(airports), "load", "--dataset", "airports",
                           "--table", "airports", "--to", "postgresql://loader:hunter2@127.0.0.1/w"],
                          capture_output=True, text=True, timeout=60)
    # Then one line names the extra to install
    assert done.returncode == 2
    assert done.stderr == "stagebus: error: loading into PostgreSQL needs psycopg: pip install 'stagebus[postgres]'\n"


@pytest.mark.postgres
def test_debug_logs_of_a_load_hold_no_password(airports: Path, postgres: str) -> None:
    # Given a URL with a password (trust auth ignores it), one reachable and one not
    reachable = postgres.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    for url in (reachable, "postgresql://postgres:hunter2@127.0.0.1:1/w"):
        # When the command runs with every log line on
        done = subprocess.run([sys.executable, "-c", "from stagebus.cli import main; main()", "--home", str(airports),
                               "--log-level", "DEBUG", "load", "--dataset", "airports", "--table", "airports",
                               "--to", url], capture_output=True, text=True, timeout=120)
        # Then neither its output nor its logs show the password
        assert done.returncode in (0, 1), done.stderr
        assert "hunter2" not in done.stdout + done.stderr
