"""index through the real Executor: every partition's records ready to serve, built deterministically."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from support.reference import ReferenceRun

CUSTOMERS = b"id,name,city\nC1,Ann Berg,Oslo\nC2,Bob Stone,Rome\n"
ORDERS = b'id,customer_id,items\nO1,C1,"teapot, cups"\n'


def indexed(root: Path, sources: Path, run_id: str = "run-1") -> ReferenceRun:
    run = ReferenceRun(root, run_id=run_id).open()
    for name, data in (("customers", CUSTOMERS), ("orders", ORDERS)):
        source = sources / f"{name}.csv"
        source.write_bytes(data)
        run.publish(name, "2024", source)
    run.run_partition_stages()
    run.seal()
    run.execute("link")
    run.execute("index")
    return run


def rows(run: ReferenceRun, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with closing(sqlite3.connect(run.artifact_path("index", "index"))) as conn:
        return conn.execute(sql).fetchall()


def test_index_holds_every_record_of_every_partition(tmp_path: Path) -> None:
    # Given two partitions indexed
    run = indexed(tmp_path / "artifacts", tmp_path)
    # Then each record is a row with its dataset, partition, line and JSON
    assert rows(run, "SELECT dataset, partition, record_index, record FROM records ORDER BY id") == [
        ("customers", "2024", 2, '{"city":"Oslo","id":"C1","name":"Ann Berg"}'),
        ("customers", "2024", 3, '{"city":"Rome","id":"C2","name":"Bob Stone"}'),
        ("orders", "2024", 2, '{"customer_id":"C1","id":"O1","items":"teapot, cups"}'),
    ]


def test_text_is_split_into_name_and_body(tmp_path: Path) -> None:
    # Given two partitions indexed (customers have a name field, orders do not)
    run = indexed(tmp_path / "artifacts", tmp_path)
    # Then the name-like fields' text is the name, every other string the body
    assert rows(run, "SELECT name, body FROM records ORDER BY id") == [
        ("Ann Berg", "Oslo\nC1"), ("Bob Stone", "Rome\nC2"), ("", "C1\nO1\nteapot, cups")]


def test_each_partition_has_a_content_hash_over_its_records(tmp_path: Path) -> None:
    # Given two partitions indexed
    run = indexed(tmp_path / "artifacts", tmp_path)
    digests = rows(run, "SELECT dataset, digest FROM records ORDER BY id")
    # Then each partition's content hash is the sha256 of its records' digests, in order
    expected = {d: hashlib.sha256("".join(x for ds, x in digests if ds == d).encode()).hexdigest()
                for d in ("customers", "orders")}
    assert rows(run, "SELECT dataset, partition, records, content_hash FROM partitions ORDER BY 1") == [
        ("customers", "2024", 2, expected["customers"]), ("orders", "2024", 1, expected["orders"])]


def test_index_stores_link_counts_per_record(tmp_path: Path) -> None:
    # Given an order that mentions customer C1
    run = indexed(tmp_path / "artifacts", tmp_path)
    # Then the customer has one link in, the order one out
    assert rows(run, "SELECT record_index, links_in, links_out FROM records ORDER BY id") == [
        (2, 1, 0), (3, 0, 0), (2, 0, 1)]


def test_index_is_byte_identical_when_rebuilt_in_a_fresh_directory(tmp_path: Path) -> None:
    # Given the same inputs indexed twice, by different runs into different artifact roots
    first = indexed(tmp_path / "one", tmp_path, run_id="run-a")
    second = indexed(tmp_path / "two", tmp_path, run_id="run-b")
    # Then the two index files are the same bytes
    a, b = first.artifact_path("index", "index"), second.artifact_path("index", "index")
    assert a.read_bytes() == b.read_bytes()


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from stagebus.stages.index import build_index
rows = (("d", "p", i, '{"name": "row %d", "text": "%s"}' % (i, "x" * 120), 0, 0, "d" * 64, "row", "x" * 120)
        for i in range(int(sys.argv[2])))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
build_index(Path(sys.argv[1]), rows, ["d/p"], ("name",))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_building_an_index_holds_no_copy_of_it_in_memory(tmp_path: Path) -> None:
    # Given an index of 200k rows built in a process of its own
    path = tmp_path / "index.db"
    grown_kb = int(subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), "200000"], check=True,
                                  capture_output=True, text=True).stdout)
    # Then the process grew by far less than the file it wrote (a MEMORY journal kept every page
    # during the VACUUM: the whole file)
    size_kb = path.stat().st_size // 1024
    assert size_kb > 40_000
    assert grown_kb < size_kb // 6, (grown_kb, size_kb)


def _split_text_reference(record: dict, name_fields: tuple[str, ...]) -> tuple[str, str]:  # type: ignore[type-arg]
    """split_text as first written: a generator over every field, no cached key layout."""
    from stagebus.stages.index import name_keys, searchable_text

    names = set(name_keys(record, name_fields))
    name = "\n".join(s for key in sorted(names) for s in searchable_text(record[key]))
    body = "\n".join(s for key in sorted(record) if key not in names for s in searchable_text(record[key]))
    return name, body


def test_split_text_agrees_with_the_plain_definition() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stagebus.stages.index import split_text

    scalars = st.one_of(st.text(max_size=4), st.text(max_size=4), st.integers(), st.none(), st.booleans())
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=2), inner, max_size=3)),
                          max_leaves=6)
    keys = st.sampled_from(["name", "Name", "title", "body", "a", "z", "LABEL"])

    @settings(max_examples=400, deadline=None)
    @given(record=st.dictionaries(keys, values, max_size=5),
           name_fields=st.sampled_from([("name", "title", "label"), ("body",), ()]))
    def check(record: dict, name_fields: tuple[str, ...]) -> None:  # type: ignore[type-arg]
        assert split_text(record, name_fields) == _split_text_reference(record, name_fields)

    check()
