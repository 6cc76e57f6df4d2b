"""serve and query: an atomic pointer to immutable snapshots, searched with any user text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.errors import InvalidInput
from stagebus.stages import query
from stagebus.stages.serve import read_pointer
from stagebus.store import MemoryEventStore
from support.reference import ReferenceRun

BOOKS = [
    {"id": "b1", "title": "The Art of Tea", "blurb": "Brewing green tea and oolong."},
    {"id": "b2", "title": "Coffee at Dawn", "blurb": "Espresso, tea's rival."},
    {"id": "b3", "title": "Quiet Gardens", "blurb": "Moss, stones and water."},
]


def served(root: Path, sources: Path, records: list[dict], dataset: str = "books",  # type: ignore[type-arg]
           run_id: str = "run-1", store: MemoryEventStore | None = None) -> ReferenceRun:
    run = ReferenceRun(root, run_id=run_id, store=store, reuse=store is not None).open()
    source = sources / f"{dataset}-{run_id}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    run.publish(dataset, "all", source)
    run.run_all()
    return run


def test_serve_publishes_the_index_as_a_content_named_snapshot(tmp_path: Path) -> None:
    # Given a run served
    run = served(tmp_path / "art", tmp_path, BOOKS)
    # Then the snapshot is the index's bytes, named by their sha256, and described by serve's output
    (snapshot,) = run.records("serve", "snapshot")
    index = run.manifest("index").artifacts[0]
    assert snapshot["path"] == f"served/snapshots/{index.sha256}.db" and snapshot["records"] == 3
    assert (tmp_path / "art" / snapshot["path"]).read_bytes() == run.artifact_path("index", "index").read_bytes()


def test_current_pointer_names_the_latest_served_snapshot(tmp_path: Path) -> None:
    # Given two runs served one after the other into the same root
    served(tmp_path / "art", tmp_path, BOOKS[:1], run_id="run-1")
    second = served(tmp_path / "art", tmp_path, BOOKS, run_id="run-2")
    # Then CURRENT points at the second run's snapshot
    pointer = read_pointer(tmp_path / "art")
    assert pointer is not None
    assert pointer.run_id == "run-2" and pointer.snapshot == second.records("serve", "snapshot")[0]["path"]


def test_serving_data_seen_before_still_moves_the_pointer(tmp_path: Path) -> None:
    # Given runs A and B served from one log, then run C with the same data as A
    store = MemoryEventStore()
    served(tmp_path / "art", tmp_path, BOOKS, run_id="A", store=store)
    served(tmp_path / "art", tmp_path, BOOKS[:1], run_id="B", store=store)
    # When C runs, its earlier stages may be reused from A
    third = served(tmp_path / "art", tmp_path, BOOKS, run_id="C", store=store)
    # Then serve still executed for C and CURRENT names C
    assert third.manifest("serve").status == "complete"
    pointer = read_pointer(tmp_path / "art")
    assert pointer is not None and pointer.run_id == "C"


def test_previous_snapshot_stays_after_the_pointer_moves(tmp_path: Path) -> None:
    # Given a first snapshot, then a second run served
    first = served(tmp_path / "art", tmp_path, BOOKS[:1], run_id="run-1")
    served(tmp_path / "art", tmp_path, BOOKS, run_id="run-2")
    # Then the first snapshot is still there for readers that opened it
    assert (tmp_path / "art" / first.records("serve", "snapshot")[0]["path"]).is_file()
    assert not list((tmp_path / "art" / "served").glob(".*.tmp"))


def test_search_ranks_records_matching_every_word(tmp_path: Path) -> None:
    # Given books served
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching two words
    hits = query.search(tmp_path / "art", "green tea")
    # Then only the record with both matches, with where it came from
    assert [(h.dataset, h.partition, h.index, h.record["id"]) for h in hits] == [("books", "all", 1, "b1")]


def test_search_orders_hits_by_bm25(tmp_path: Path) -> None:
    # Given two books mentioning tea, one of them twice
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching for tea
    hits = query.search(tmp_path / "art", "tea")
    # Then the better match comes first, scores descending
    assert [h.record["id"] for h in hits] == ["b1", "b2"]
    assert hits[0].score > hits[1].score


@pytest.mark.parametrize("text", ['"', "tea OR", "NEAR(tea", "*", "tea AND -", "col:tea", "'; DROP TABLE records;--",
                                  "^tea", "(((", "tea\x00", ""])
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
        source = tmp_path / f"{dataset}.jsonl"
        source.write_text(json.dumps(record) + "\n")
        run.publish(dataset, "all", source)
    run.run_all()
    # When searching films only
    hits = query.search(tmp_path / "art", "tea", dataset="films")
    # Then only films come back
    assert [h.dataset for h in hits] == ["films"]


def test_search_respects_the_limit(tmp_path: Path) -> None:
    # Given two books mentioning tea
    served(tmp_path / "art", tmp_path, BOOKS)
    # When asking for one hit, Then one comes back
    assert len(query.search(tmp_path / "art", "tea", limit=1)) == 1


def test_search_before_anything_is_served_says_so(tmp_path: Path) -> None:
    # Given an empty artifact root, When searching, Then the error says to run the pipeline
    with pytest.raises(InvalidInput, match="nothing is served"):
        query.search(tmp_path, "tea")


def test_hit_snippet_shows_text_around_the_match(tmp_path: Path) -> None:
    # Given books served
    served(tmp_path / "art", tmp_path, BOOKS)
    # When searching a word of the blurb
    (hit,) = query.search(tmp_path / "art", "oolong")
    # Then the snippet shows it
    assert "oolong" in hit.snippet
