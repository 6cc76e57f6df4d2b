"""serve and query: a cumulative served view that follows the runs, searched with any user text."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.errors import InvalidInput
from stagebus.stages import query
from stagebus.stages.served import served_path
from stagebus.store import EventStore, MemoryEventStore
from support.reference import RUN_STAGES, ReferenceRun

BOOKS = [
    {"id": "b1", "title": "The Art of Tea", "blurb": "Brewing green tea and oolong."},
    {"id": "b2", "title": "Coffee at Dawn", "blurb": "Espresso, tea's rival."},
    {"id": "b3", "title": "Quiet Gardens", "blurb": "Moss, stones and water."},
]


def write(path: Path, records: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def served(root: Path, sources: Path, records: list[dict], dataset: str = "books",  # type: ignore[type-arg]
           run_id: str = "run-1", store: EventStore | None = None, partition: str = "all") -> ReferenceRun:
    run = ReferenceRun(root, run_id=run_id, store=store, reuse=store is not None).open()
    run.publish(dataset, partition, write(sources / f"{dataset}-{partition}-{run_id}.jsonl", records))
    run.run_all()
    return run


def served_rows(root: Path) -> list[tuple]:  # type: ignore[type-arg]
    with closing(sqlite3.connect(served_path(root))) as conn:
        return conn.execute("SELECT dataset, partition, run_id, records FROM partitions ORDER BY 1, 2").fetchall()


def test_serve_switch_says_what_it_changed(tmp_path: Path) -> None:
    # Given a run served
    run = served(tmp_path / "art", tmp_path, BOOKS)
    # Then serve's output names the served database, the index it applied and what changed
    (switch,) = run.records("serve", "switch")
    index = run.manifest("index").artifacts[0]
    assert switch == {"path": "served/served.db", "index_sha256": index.sha256, "partitions": 1, "replaced": 1,
                      "unchanged": 0, "kept_newer": 0, "records": 3}
    assert served_rows(tmp_path / "art") == [("books", "all", "run-1", 3)]


def test_a_run_of_another_dataset_does_not_hide_the_first(tmp_path: Path) -> None:
    # Given books served by one run, then films by another run
    store = MemoryEventStore()
    served(tmp_path / "art", tmp_path, BOOKS, run_id="run-1", store=store)
    served(tmp_path / "art", tmp_path, [{"id": "f1", "title": "Tea with Mussolini"}], dataset="films",
           run_id="run-2", store=store)
    # When searching, Then both datasets answer, each from its own run
    hits = query.search(tmp_path / "art", "tea")
    assert sorted((h.dataset, h.run_id) for h in hits) == [("books", "run-1"), ("books", "run-1"), ("films", "run-2")]


def test_a_rerun_of_one_partition_replaces_only_its_records(tmp_path: Path) -> None:
    # Given two partitions served by run 1
    store = MemoryEventStore()
    root = tmp_path / "art"
    first = ReferenceRun(root, run_id="run-1", store=store, reuse=True).open()
    first.publish("books", "p1", write(tmp_path / "p1.jsonl", BOOKS[:1]))
    first.publish("books", "p2", write(tmp_path / "p2.jsonl", BOOKS[2:]))
    first.run_all()
    # When run 2 serves p1 with changed content
    second = served(root, tmp_path, [{"id": "b1", "title": "The Art of Matcha"}], partition="p1", run_id="run-2",
                    store=store)
    # Then p1 is run 2's, p2 is still run 1's, and only p1 was replaced
    assert served_rows(root) == [("books", "p1", "run-2", 1), ("books", "p2", "run-1", 1)]
    assert second.records("serve", "switch")[0]["replaced"] == 1
    assert [h.record["title"] for h in query.search(root, "art")] == ["The Art of Matcha"]
    assert [h.run_id for h in query.search(root, "moss")] == ["run-1"]


def test_serving_unchanged_content_only_updates_the_run(tmp_path: Path) -> None:
    # Given books served by run 1, When run 2 serves the same content
    store = MemoryEventStore()
    served(tmp_path / "art", tmp_path, BOOKS, run_id="run-1", store=store)
    with closing(sqlite3.connect(served_path(tmp_path / "art"))) as conn:
        ids = conn.execute("SELECT id FROM records ORDER BY id").fetchall()
    second = served(tmp_path / "art", tmp_path, BOOKS, run_id="run-2", store=store)
    # Then serve executed (never reused), no record was rewritten, and run 2 serves the partition
    assert second.manifest("serve").status == "complete"
    assert second.records("serve", "switch")[0] | {"index_sha256": ""} == {
        "path": "served/served.db", "index_sha256": "", "partitions": 1, "replaced": 0, "unchanged": 1,
        "kept_newer": 0, "records": 0}
    with closing(sqlite3.connect(served_path(tmp_path / "art"))) as conn:
        assert conn.execute("SELECT id FROM records ORDER BY id").fetchall() == ids
    assert served_rows(tmp_path / "art") == [("books", "all", "run-2", 3)]


def test_an_older_run_finishing_late_does_not_override_a_newer_one(tmp_path: Path) -> None:
    # Given run 1 opened first and run 2 opened second, both publishing the same partition
    store = MemoryEventStore()
    root = tmp_path / "art"
    old = ReferenceRun(root, run_id="run-1", store=store).open()
    new = ReferenceRun(root, run_id="run-2", store=store).open()
    old.publish("books", "all", write(tmp_path / "old.jsonl", [{"id": "b1", "title": "Old edition"}]))
    new.publish("books", "all", write(tmp_path / "new.jsonl", [{"id": "b1", "title": "New edition"}]))
    # When the newer run is served first and the older one finishes after it
    new.run_all()
    old.run_all()
    # Then the newer run's records stay served, and the older switch says it kept them
    assert [h.record["title"] for h in query.search(root, "edition")] == ["New edition"]
    assert served_rows(root) == [("books", "all", "run-2", 1)]
    assert old.records("serve", "switch")[0]["kept_newer"] == 1


def test_a_duplicated_serve_task_changes_nothing(tmp_path: Path) -> None:
    # Given a run served
    run = served(tmp_path / "art", tmp_path, BOOKS)
    before = served_path(tmp_path / "art").read_bytes()
    # When its serve task is delivered again (the manifest exists: a duplicate)
    run.execute("serve")
    # Then the served view is the same bytes
    assert served_path(tmp_path / "art").read_bytes() == before


def test_a_reader_never_sees_half_a_switch(tmp_path: Path) -> None:
    # Given 2 partitions of 200 records served by run 1
    store = MemoryEventStore()
    root = tmp_path / "art"
    rows = [{"id": f"r{i}", "title": f"tea number {i}"} for i in range(200)]
    first = ReferenceRun(root, run_id="run-1", store=store, reuse=True).open()
    for part in ("p1", "p2"):
        first.publish("books", part, write(tmp_path / f"{part}.jsonl", rows))
    first.run_all()
    second = ReferenceRun(root, run_id="run-2", store=store, reuse=True).open()
    for part in ("p1", "p2"):
        second.publish("books", part, write(tmp_path / f"{part}-2.jsonl", [{"id": "x", "title": "tea anew"}]))
    second.run_partition_stages()
    second.seal()
    for stage in RUN_STAGES[:-1]:
        second.execute(stage)
    # When a reader holds a read transaction open while run 2's switch waits to commit
    reader = sqlite3.connect(f"{served_path(root).as_uri()}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    seen = reader.execute("SELECT count(*), count(DISTINCT partition) FROM records").fetchone()
    done = threading.Thread(target=second.execute, args=("serve",))
    done.start()
    assert writing(served_path(root), timeout_s=30)  # the switch holds the write lock, not yet committed
    # Then it still sees run 1's view whole, and after the switch run 2's view whole
    assert done.is_alive() and seen == (400, 2)
    assert reader.execute("SELECT count(*) FROM records").fetchone() == (400,)
    reader.execute("COMMIT")
    done.join(timeout=60)
    assert reader.execute("SELECT count(*), count(DISTINCT partition) FROM records").fetchone() == (2, 2)
    reader.close()


def writing(path: Path, timeout_s: float) -> bool:
    """Wait until another connection holds the database's write lock."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as probe:
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            except sqlite3.OperationalError:
                return True
        time.sleep(0.01)
    return False


def test_search_ranks_records_matching_every_word(tmp_path: Path) -> None:
    # Given books served
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching two words
    hits = query.search(tmp_path / "art", "green tea")
    # Then only the record with both matches, with where it came from
    assert [(h.dataset, h.partition, h.index, h.record["id"]) for h in hits] == [("books", "all", 1, "b1")]


def test_search_orders_hits_by_name_then_bm25(tmp_path: Path) -> None:
    # Given two books mentioning tea, one of them in its title
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching for tea
    hits = query.search(tmp_path / "art", "tea")
    # Then the title match comes first, scores descending
    assert [h.record["id"] for h in hits] == ["b1", "b2"]
    assert hits[0].score > hits[1].score


@pytest.mark.parametrize("text", ['"', "tea OR", "NEAR(tea", "*", "tea AND -", "col:tea", "'; DROP TABLE records;--",
                                  "^tea", "(((", "tea\x00", "", "name:tea"])
def test_any_user_text_is_a_plain_search_and_never_an_error(tmp_path: Path, text: str) -> None:
    # Given books served
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching text full of FTS5 syntax
    hits = query.search(tmp_path / "art", text)
    # Then it is a list (possibly empty), never a syntax error
    assert isinstance(hits, list)


@pytest.fixture(scope="module")
def books_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("books")
    served(tmp / "art", tmp, BOOKS)
    return tmp / "art"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_search_never_fails_on_generated_text(books_root: Path, text: str) -> None:
    # Given books served, When searching any generated text, Then it answers with a list
    assert isinstance(query.search(books_root, text), list)


def test_search_filters_by_dataset(tmp_path: Path) -> None:
    # Given books and films in one run, both mentioning tea
    run = ReferenceRun(tmp_path / "art").open()
    for dataset, record in (("books", BOOKS[0]), ("films", {"id": "f1", "title": "Tea with Mussolini"})):
        run.publish(dataset, "all", write(tmp_path / f"{dataset}.jsonl", [record]))
    run.run_all()
    # When searching films only, Then only films come back
    assert [h.dataset for h in query.search(tmp_path / "art", "tea", dataset="films")] == ["films"]


def test_search_respects_the_limit(tmp_path: Path) -> None:
    # Given two books mentioning tea, When asking for one hit, Then one comes back
    served(tmp_path / "art", tmp_path, BOOKS)
    assert len(query.search(tmp_path / "art", "tea", limit=1)) == 1


def test_search_before_anything_is_served_says_so_and_creates_nothing(tmp_path: Path) -> None:
    # Given an empty artifact root, When searching, Then the error says to run the pipeline
    with pytest.raises(InvalidInput, match="nothing is served"):
        query.search(tmp_path / "art", "tea")
    assert not (tmp_path / "art").exists()


def test_hit_snippet_names_the_fields_it_shows(tmp_path: Path) -> None:
    # Given books served, When searching a word of the blurb
    served(tmp_path / "art", tmp_path, BOOKS)
    (hit,) = query.search(tmp_path / "art", "oolong")
    # Then the snippet shows the title and the matching field, by name, the match marked
    assert hit.snippet == "title: The Art of Tea · blurb: Brewing green tea and [oolong]."


def test_a_typed_source_is_served_with_its_types(tmp_path: Path) -> None:
    # Given JSON lines with numbers, booleans and nulls
    served(tmp_path / "art", tmp_path, [{"name": "Heathrow", "elevation_ft": 83, "lat": 51.47, "open": True,
                                         "iata": None}])
    # When searching, Then the record comes back with its values' types
    (hit,) = query.search(tmp_path / "art", "heathrow")
    assert hit.record == {"name": "Heathrow", "elevation_ft": 83, "lat": 51.47, "open": True, "iata": None}
