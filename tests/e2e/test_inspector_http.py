"""The web inspector over HTTP: every page of a real ``stagebus ui`` process over a home made by
running the toy pipeline (see ``support.inspector``), its filters, paging, links, fragments and
errors, and proof that serving it changes no file."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from stagebus.events import RunAbandoned
from stagebus.store import SqliteEventStore
from support.files import become_nobody, snapshot
from support.inspector import BOOT, Server, build_home, child_run, fetch, publish, serve, stagebus

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inspector")
    return build_home(root / "home", root / "data")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    with serve(home) as running:
        yield running


def links(body: str, pattern: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(rf'href="({pattern}[^"]*)"', body)]


def text(body: str) -> str:
    """The page's text, tags dropped and whitespace folded, to match sentences in."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def ledger_partitions(body: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'class="partition-link" href="[^"]*">([^<]*)<', body)]


def test_overview_counts_statuses_and_shows_recent_failures_and_the_log_head(server: Server) -> None:
    page = server.get("/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    body = text(page.body)
    # Counts by status per dataset: nums has two valid partitions and one invalid
    counts = re.search(r'<table id="counts">(.*?)</table>', page.body, re.S)
    assert counts is not None
    assert re.sub(r"<[^>]+>|\s+", " ", counts.group(1)).split()[-5:] == ["nums", "0", "2", "1", "3"]
    # The recent failures name the stage and error; the log head and the chain badge are there
    assert "load" in body and "PermanentStageError: poisoned record" in body
    assert "Head at position 32" in body
    assert "hash chain not verified by this inspector yet" in body
    assert "No run in progress." in body and page.headers["x-inspector-live"] == "0"


def test_ledger_lists_partitions_with_status_run_counts_and_links(server: Server) -> None:
    page = server.get("/ledger")
    assert page.status == 200
    assert ledger_partitions(page.body) == ["a", "b", "c"]
    row_a = re.search(r'<tr class="row valid-row">(.*?)</tr>', page.body, re.S)
    assert row_a is not None
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row_a.group(1), re.S)]
    assert cells[:7] == ["nums", "a", "valid", "r4", "3", "1", "2"]  # records 3, rejected 1, attempts 2
    assert "3 partition(s) match" in text(page.body)
    for link in links(page.body, "/ui/partition"):
        assert server.get(link.removeprefix("/ui")).status == 200


@pytest.mark.parametrize(("query", "expected"), [
    ("status=invalid", ["b"]),
    ("status=valid", ["a", "c"]),
    ("dataset=nums&status=pending", []),
    ("run=r1", ["c"]),
    ("q=nums/c", ["c"]),
    ("q=poisoned", ["b"]),  # the text filter matches the reason too
    ("sort=partition&order=desc", ["c", "b", "a"]),
    ("sort=status", ["b", "a", "c"]),
])
def test_ledger_filters_and_sorts(server: Server, query: str, expected: list[str]) -> None:
    page = server.get(f"/ledger?{query}")
    assert page.status == 200
    assert ledger_partitions(page.body) == expected


def test_ledger_sorted_by_update_time_puts_the_newest_first(server: Server) -> None:
    # a was decided last (r4), then b (r3's failure), then c (r1)
    assert ledger_partitions(server.get("/ledger?sort=updated_at&order=desc").body) == ["a", "b", "c"]


def test_ledger_pages_forward_and_back_with_keyset_cursors(server: Server) -> None:
    first = server.get("/ledger?limit=2")
    assert ledger_partitions(first.body) == ["a", "b"]
    assert 'id="page-prev"' not in first.body
    (next_link,) = links(first.body, "/ui/ledger")[-1:]
    assert "after=" in next_link and "limit=2" in next_link
    second = server.get(next_link.removeprefix("/ui"))
    assert ledger_partitions(second.body) == ["c"]
    assert 'id="page-next"' not in second.body
    prev = re.search(r'href="([^"]*)" id="page-prev"', second.body)
    assert prev is not None
    assert ledger_partitions(server.get(html.unescape(prev.group(1)).removeprefix("/ui")).body) == ["a", "b"]


def test_a_failing_partitions_why_names_the_stage_and_error_with_log_links(server: Server) -> None:
    page = server.get("/partition?dataset=nums&partition=b")
    assert page.status == 200
    facts = re.findall(r'<li class="fact (\w+)" data-kind="\w+" data-stage="(\w*)">(.*?)</li>', page.body, re.S)
    by_stage = {stage: (kind, text(body)) for kind, stage, body in facts}
    kind, sentence = by_stage["load"]
    assert kind == "failed"
    assert "load failed for good" in sentence and "PermanentStageError: poisoned record" in sentence
    assert by_stage["double"][0] == "blocked" and "upstream stage load failed" in by_stage["double"][1]
    # Each position links to the event it rests on: the failure's is a stage_failed of stage load
    position = re.search(r'data-stage="load">.*?href="/ui/log/(\d+)"', page.body, re.S)
    assert position is not None
    event = server.get(f"/log/{position.group(1)}")
    assert event.status == 200
    assert "stage_failed" in event.body and "poisoned record" in event.body
    # The task section shows the traceback
    assert 'class="traceback"' in page.body and "PermanentStageError" in page.body


def test_partition_page_shows_history_across_runs_and_manifests_with_artifacts(server: Server) -> None:
    page = server.get("/partition?dataset=nums&partition=a")
    assert page.status == 200
    runs = re.search(r'<table id="partition-runs">(.*?)</table>', page.body, re.S)
    assert runs is not None and "r1" in runs.group(1) and "r4" in runs.group(1)
    history = re.search(r'<table id="history">(.*?)</table>', page.body, re.S)
    assert history is not None
    rows = [text(r) for r in re.findall(r"<tr>(.*?)</tr>", history.group(1), re.S)[1:]]
    positions = [int(re.match(r"#(\d+)", r).group(1)) for r in rows]  # type: ignore[union-attr]
    assert positions == sorted(positions)  # log order
    assert any(" valid valid r1 " in f" {r} " for r in rows) and any(" replaced r4 " in f" {r} " for r in rows)
    # Tasks per stage, with manifest fields: hashes, artifacts with sha256 and size, metrics
    assert page.body.count('class="task"') == 3
    sha = re.findall(r'class="mono sha256">([0-9a-f]{64})<', page.body)
    assert sha, "artifacts with their sha256"
    assert "records_in 3" in text(page.body) and "records_rejected 1" in text(page.body)
    # The why explains r4 by default: double executed again because its config changed
    assert "double executed again: its config hash changed since run r1" in text(page.body)
    older = server.get("/partition?dataset=nums&partition=a&run=r1")
    assert older.status == 200 and "explaining run r1" in text(older.body)


def test_run_page_draws_the_plan_and_shows_counts_failures_lineage_and_resume(server: Server, home: Path) -> None:
    child = child_run(home, "r2")
    page = server.get("/runs/r2")
    assert page.status == 200
    body = text(page.body)
    svg = re.search(r"<svg class=\"dag\".*?</svg>", page.body, re.S)
    assert svg is not None
    stages = re.findall(r'<g class="stage (\w+)" data-stage="(\w+)"', svg.group(0))
    assert stages == [("failed", "load"), ("pending", "double"), ("pending", "total")]
    edges = re.findall(r'data-from="(\w+)" data-to="(\w+)"', svg.group(0))
    assert edges == [("load", "double"), ("double", "total")]
    assert "PermanentStageError" in page.body and 'class="traceback"' in page.body
    assert "stagebus run --run-id r2 --resume-from load" in body
    assert f'href="/ui/runs/{child}"' in page.body  # resumed by
    child_page = server.get(f"/runs/{quote(child)}")
    assert child_page.status == 200
    assert 'id="parent-run"' in child_page.body and "Resumed from run r2 at stage load" in text(child_page.body)
    done = server.get("/runs/r1")
    assert re.findall(r'<g class="stage (\w+)"', done.body) == ["complete"] * 3
    assert re.search(r'<tr data-stage="load">.*?</tr>', done.body, re.S) is not None


def test_runs_page_lists_every_run_newest_first(server: Server, home: Path) -> None:
    page = server.get("/runs")
    assert page.status == 200
    ids = re.findall(r'class="run-link" href="/ui/runs/([^"]+)"', page.body)
    assert ids == ["r4", child_run(home, "r2"), "r2", "r1"]


def test_rejects_page_shows_row_error_and_record(server: Server) -> None:
    page = server.get("/rejects?run=r1")
    assert page.status == 200
    body = text(page.body)
    assert "1 reject(s) in run r1" in body
    row = re.search(r'<table id="rejects">.*?</tr>\s*<tr>(.*?)</tr>', page.body, re.S)
    assert row is not None
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert cells[:6] == ["nums", "a", "load", "complete", "1", "n is not an integer"]
    assert '"n":"x"' in cells[6].replace(" ", "")
    assert "0 reject(s) in run r1" in text(server.get("/rejects?run=r1&stage=double").body)
    assert server.get("/rejects?run=nope").status == 404


def test_log_tails_filters_by_type_and_key_and_shows_each_events_fields(server: Server) -> None:
    page = server.get("/log")
    assert page.status == 200 and page.headers["x-inspector-live"] == "1"  # the tail refreshes itself
    positions = [int(p) for p in re.findall(r'<td><a href="/ui/log/(\d+)">', page.body)]
    assert positions == list(range(32, 0, -1))
    failed = server.get("/log?type=stage_failed")
    kinds = re.findall(r'<tr class="event" data-type="(\w+)">', failed.body)
    assert kinds and set(kinds) == {"stage_failed"}
    keyed = server.get("/log?key=manifest/r1/")
    keys = re.findall(r'<td class="mono">(manifest/[^<]*)</td>', keyed.body)
    assert len(keys) == 5 and all(k.startswith("manifest/r1/") for k in keys)  # load, double x2; total x1 ... a, c
    older = server.get("/log?limit=10")
    more = re.search(r'href="/ui/log\?([^"]*)" id="log-older"', older.body)
    assert more is not None and "before=23" in html.unescape(more.group(1))
    event = server.get("/log/1")
    assert event.status == 200 and "run_opened" in event.body and "r1" in event.body
    assert server.get("/log/999").status == 404


def test_verify_on_demand_checks_the_chain_and_the_overview_badge_shows_it(server: Server) -> None:
    page = server.get("/log/verify")
    assert page.status == 200
    assert 'id="verify-result">ok<' in page.body.replace("\n", "")
    assert "32 event(s) checked" in text(page.body)
    assert "hash chain verified up to position 32" in text(server.get("/").body)


def test_a_fragment_is_the_live_part_of_a_page_only(server: Server) -> None:
    page = server.get("/ledger?status=valid&fragment=1")
    assert page.status == 200
    assert "<html" not in page.body and 'id="ledger"' in page.body
    assert ledger_partitions(page.body) == ["a", "c"]
    assert 'data-url="/ui/ledger?status=valid&amp;fragment=1"' in server.get("/ledger?status=valid").body


@pytest.mark.parametrize(("path", "status"), [
    ("/runs/nope", 404), ("/partition?dataset=nums&partition=zzz", 404), ("/ledger?status=bogus", 400),
    ("/ledger?sort=bogus", 400), ("/ledger?after=%%%", 400), ("/partition?dataset=nums", 422),
    ("/static/../../etc/passwd", 404), ("/static/nothing.js", 404),
])
def test_bad_requests_get_a_clear_status(server: Server, path: str, status: int) -> None:
    assert server.get(path).status == status


def test_static_assets_are_vendored_and_the_root_redirects(server: Server) -> None:
    script = server.get("/static/live.js")
    assert script.status == 200 and "X-Inspector-Live" in script.body
    assert server.get("/static/inspector.css").status == 200
    root = fetch(server.url.removesuffix("/ui") + "/")
    assert root.status == 200 and "Overview" in root.body  # followed to /ui/
    assert "http" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", server.get("/runs/r1").body).replace(
        server.url, "")  # no CDN: nothing is loaded from elsewhere


PAGES = ["/", "/ledger", "/ledger?status=invalid&sort=updated_at&order=desc", "/partition?dataset=nums&partition=a",
         "/partition?dataset=nums&partition=b", "/runs", "/runs/r1", "/runs/r2", "/rejects", "/log",
         "/log?type=stage_failed", "/log/1", "/log/verify", "/ledger?fragment=1"]


def test_serving_every_page_changes_no_file_of_the_home(home: Path, tmp_path: Path) -> None:
    # Given a copy of the home (so the module's server does not share it), its state recorded
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    before = snapshot(copy)
    # When a server serves every page of it, twice
    with serve(copy) as server:
        for path in PAGES * 2:
            assert server.get(path).status == 200, path
    # Then not one file, directory, mode or mtime changed
    assert snapshot(copy) == before


def test_a_home_whose_files_and_directories_are_read_only_is_served(home: Path, tmp_path: Path) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    # a partition published, then its run abandoned after the projections were written: they lag the log
    publish(copy, tmp_path / "data", "r5", "d", [{"n": 7}])
    with SqliteEventStore(copy / "log.db") as store:
        store.append_one(RunAbandoned(run_id="r5", reason="test"))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(copy)
    try:
        with serve(copy) as server:
            for path in PAGES:
                assert server.get(path).status == 200, path
            assert ledger_partitions(server.get("/ledger?status=invalid").body) == ["b", "d"]
            assert "1 newer event(s) applied in memory" in text(server.get("/").body)
        assert snapshot(copy) == before
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def nobody_can_import(interpreter: str, purelib: str, cwd: Path) -> bool:
    probe = "import site, sys; site.addsitedir(sys.argv[1]); import stagebus.api.inspector"
    try:
        done = subprocess.run([interpreter, "-c", probe, purelib], preexec_fn=become_nobody, capture_output=True,
                              timeout=60, cwd=cwd)
    except OSError:
        return False
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to user nobody")
def test_user_nobody_can_serve_a_read_only_home(home: Path) -> None:
    # Given a read-only copy of the home in a world-readable directory, and user nobody, who
    # could not write to it even if the inspector tried
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="stagebus-ui-ro-"))
    shared.chmod(0o755)
    copy = shared / "home"
    shutil.copytree(home, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(copy)
    boot = "import site, sys; site.addsitedir(sys.argv.pop(1)); from stagebus.cli import main; main()"
    purelib = sysconfig.get_paths()["purelib"]
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    interpreter = next((c for c in candidates if Path(c).exists() and nobody_can_import(c, purelib, shared)), None)
    if interpreter is None:
        subprocess.run(["rm", "-rf", str(shared)], check=True)
        pytest.skip("no Python interpreter with which user nobody can import stagebus")
    command = [interpreter, "-B", "-c", boot, purelib, "--home", str(copy), "ui", "--port", "{port}"]
    try:
        # When nobody serves it
        with serve(copy, command=command, preexec_fn=become_nobody, cwd=shared,
                   env={"HOME": str(shared)}) as server:
            # Then every page answers and nothing under the home changed
            for path in PAGES:
                assert server.get(path).status == 200, path
        assert snapshot(copy) == before
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=True)


def test_ui_refuses_a_non_loopback_host_without_api_keys(home: Path) -> None:
    result = stagebus(home, "ui", "--host", "0.0.0.0")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: --host 0.0.0.0 is not a loopback address")


def test_ui_says_it_is_open_on_loopback_at_start_up(server: Server) -> None:
    server.process.terminate()
    server.process.wait(timeout=15)
    said = server.stderr()
    assert "read-only inspector of" in said and "/ui/" in said
    assert "no API keys are configured: the inspector is open, so it listens on loopback only" in said


def test_ui_on_a_home_without_a_log_is_one_clear_line(tmp_path: Path) -> None:
    result = stagebus(tmp_path / "empty", "ui")
    assert result.exit_code != 0
    assert result.stderr.startswith("stagebus: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "empty").exists()


def test_a_page_in_progress_refreshes_until_the_work_is_done(tmp_path: Path) -> None:
    # Given a home with a published partition nobody has processed yet
    home = tmp_path / "home"
    publish(home, tmp_path / "data", "r1", "p", [{"n": 1}])
    with serve(home) as server:
        page = server.get("/partition?dataset=nums&partition=p")
        assert page.status == 200 and 'data-live="1"' in page.body and page.headers["x-inspector-live"] == "1"
        overview = server.get("/")
        assert overview.headers["x-inspector-live"] == "1"  # a run in progress, with per-stage progress
        progress = overview.body.split('id="in-progress"')[1].split("</section>")[0]
        assert 'href="/ui/runs/r1"' in progress
        assert [text(r).split()[:2] for r in re.findall(r"<tr><td>(.*?)</tr>", progress, re.S)] == [
            ["load", "0/1"], ["double", "0/1"], ["total", "0/1"]]
        # When the pipeline runs
        assert stagebus(home, "run").exit_code == 0
        # Then the fragment shows the new state and says the page is no longer in progress
        deadline = time.monotonic() + 20
        while True:
            fragment = server.get("/partition?dataset=nums&partition=p&fragment=1")
            assert fragment.status == 200, fragment.body
            if fragment.headers["x-inspector-live"] == "0":
                break
            assert time.monotonic() < deadline, "the page stayed in progress"
            time.sleep(0.2)
        assert 'class="status valid"' in fragment.body


def test_ui_takes_the_home_after_the_command_too(home: Path) -> None:
    command = [sys.executable, "-B", "-c", BOOT, "ui", "--home", str(home), "--port", "{port}"]
    with serve(home, command=command) as server:
        assert ledger_partitions(server.get("/ledger").body) == ["a", "b", "c"]
