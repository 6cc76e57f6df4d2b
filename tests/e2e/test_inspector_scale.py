"""The inspector over a generated home with 100,000 partitions: the ledger's pages, filters,
counts and paging, and a partition page, are correct at that size. Page times are measured in
``bench/ui.py`` (``python -m bench ui``), not asserted here."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.events import Event, PartitionIngested, RunOpened, StageFailed
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support.inspector import Server, serve
from support.toy import toy_pipeline

pytestmark = pytest.mark.timeout(600)
PARTITIONS = 100_000
RUN_SIZE = 1_000


def grow(home: Path) -> int:
    """100 runs of 1,000 partitions, appended 5,000 events a batch: every tenth run's partitions
    fail for good in ``load`` (invalid), the others are ingested and wait (pending)."""
    home.mkdir(parents=True)
    plan = toy_pipeline().plan()
    events: list[Event] = []
    with SqliteEventStore(home / "log.db", synchronous="NORMAL") as store:
        for number in range(PARTITIONS // RUN_SIZE):
            run_id = f"run{number:03d}"
            events.append(RunOpened(run_id=run_id, pipeline="toy", pipeline_version="1", plan=plan))
            for index in range(number * RUN_SIZE, (number + 1) * RUN_SIZE):
                events.append(PartitionIngested(run_id=run_id, dataset="big", partition=f"p{index:06d}",
                                                uri="file:///dev/null", content_hash=f"h{index}", size=1))
                if number % 10 == 9:
                    events.append(StageFailed(run_id=run_id, stage="load", partition=f"big/p{index:06d}",
                                              attempt=1, error_type="ValueError", message=f"bad p{index:06d}",
                                              final=True))
                if len(events) >= 5000:
                    store.append(events)
                    events = []
        store.append(events)
        with Projections(store, home / "projections") as projections:
            projections.catch_up()
        return store.head()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("scale") / "home"
    started = time.perf_counter()
    assert grow(home) == 100 + PARTITIONS + PARTITIONS // 10
    print(f"grown in {time.perf_counter() - started:.1f} s")
    with serve(home) as running:
        yield running


def rows(body: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'class="partition-link" href="[^"]*">([^<]*)<', body)]


def test_ledger_first_page_counts_every_partition_and_shows_fifty(server: Server) -> None:
    page = server.get("/ledger")
    assert page.status == 200
    assert "100000 partition(s) match · showing 50" in " ".join(page.body.split())
    assert rows(page.body) == [f"p{i:06d}" for i in range(50)]


def test_ledger_filters_at_100k(server: Server) -> None:
    invalid = server.get("/ledger?status=invalid")
    assert "10000 partition(s) match" in invalid.body
    assert rows(invalid.body)[:2] == ["p009000", "p009001"]
    text = server.get("/ledger?q=p05432")
    assert rows(text.body) == [f"p05432{i}" for i in range(10)]
    run = server.get("/ledger?run=run019&sort=partition&order=desc&limit=3")
    assert rows(run.body) == ["p019999", "p019998", "p019997"]
    newest = server.get("/ledger?sort=updated_at&order=desc&limit=1")
    assert rows(newest.body) == ["p099999"]


def test_ledger_pages_deep_into_100k_by_keyset(server: Server) -> None:
    path = "/ledger?status=pending&limit=500"
    seen: list[str] = []
    for _ in range(4):
        page = server.get(path)
        seen += rows(page.body)
        nxt = re.search(r'href="/ui(/ledger[^"]*)" id="page-next"', page.body)
        assert nxt is not None
        path = html.unescape(nxt.group(1))
    assert seen == [f"p{i:06d}" for i in range(2000)]


def test_partition_and_overview_pages_at_100k(server: Server) -> None:
    page = server.get("/partition?dataset=big&partition=p099123")
    assert page.status == 200 and "load failed for good at attempt 1: ValueError: bad p099123" in page.body
    overview = server.get("/")
    assert overview.status == 200
    counts = re.search(r'<table id="counts">(.*?)</table>', overview.body, re.S)
    assert counts is not None  # pending, valid, invalid, total
    assert re.sub(r"<[^>]+>|\s+", " ", counts.group(1)).split()[-5:] == ["big", "90000", "0", "10000", "100000"]
