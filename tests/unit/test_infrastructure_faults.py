"""Infrastructure faults are not data failures: a full disk leaves a task waiting, uncharged, and
the next run after the fault clears finishes it (docs/failures.md)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.failures import classify
from stagebus.artifacts.local import ArtifactStore, PendingFile
from stagebus.errors import PermanentStageError, StoreUnavailable
from stagebus.events import StageFailed
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support import toy


class FullDisk(ArtifactStore):
    """A test seam: an artifact store whose disk is full while ``full`` is set."""

    full = True

    def pending(self, name: str) -> PendingFile:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().pending(name)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[SqliteEventStore, Projections, Path]]:
    toy.CALLS.clear()
    toy.FAIL_BUDGET.clear()
    store = SqliteEventStore(tmp_path / "log.db")
    projections = Projections(store, tmp_path / "projections")
    yield store, projections, tmp_path
    projections.close()
    store.close()


def runner_on(store: SqliteEventStore, projections: Projections, root: Path, disk: ArtifactStore) -> EmbeddedRunner:
    runner = EmbeddedRunner(store, projections, root / "art", toy.registry(2), workers=2, infra_wait_s=0.6)
    runner.artifacts = runner.executor.artifacts = disk
    return runner


def test_a_full_disk_leaves_tasks_waiting_uncharged_and_a_later_run_finishes(home) -> None:  # type: ignore[no-untyped-def]
    store, projections, root = home
    # Given a sealed run and an artifact store whose disk is full
    toy.publish(store, root, "r1", {"p0": [{"n": 1}], "p1": [{"n": 2}]})
    disk = FullDisk(root / "art")
    # When the embedded runner runs (waiting out the fault for 0.6 s)
    with runner_on(store, projections, root, disk) as runner:
        report = runner.run()
    # Then nothing failed: the tasks wait on infrastructure, pending, with the reason shown
    assert report.failed == []
    assert len(report.waiting) == 2 and all("No space left" in reason for _, reason in report.waiting)
    failures = [e for e in (r.event() for r in store.read()) if isinstance(e, StageFailed)]
    assert failures and all(f.infrastructure and not f.final for f in failures)
    projections.catch_up()
    run = projections.run("r1")
    assert run is not None
    tasks = [run.tasks[(s, p)] for (s, p) in run.tasks]
    assert {t.status for t in tasks} == {"waiting"} and {t.attempts for t in tasks} == {1}
    assert all(s.pending == 2 and s.waiting == 2 for s in run.stage_summaries if s.stage == "load")
    assert {e.status for e in projections.ledger()} <= {"pending"}
    # When space is freed and the runner runs again (no --resume-from)
    disk.full = False
    with runner_on(store, projections, root, disk) as runner:
        again = runner.run()
    # Then the run completes, every partition valid, and no attempt was charged for the fault
    assert again.ok and again.waiting == []
    assert {e.status for e in projections.ledger()} == {"valid"}
    manifests = projections.manifests("r1", "load")
    assert {m.attempt for m in manifests} == {1}


@pytest.mark.parametrize(("exc", "kind"), [
    (OSError(errno.ENOSPC, "full"), "infrastructure"),
    (OSError(errno.EIO, "io"), "infrastructure"),
    (OSError(errno.EROFS, "ro"), "infrastructure"),
    (FileNotFoundError(errno.ENOENT, "gone"), "infrastructure"),
    (StoreUnavailable("down"), "infrastructure"),
    (IsADirectoryError(errno.EISDIR, "dir"), "data"),
    (PermanentStageError("metadata encoding 'nope' is not a known text encoding"), "data"),
    (PermanentStageError("bad"), "data"),
    (KeyError("bug"), "transient"),
])
def test_errors_are_classified_in_one_place(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_a_fleet_actor_sends_itself_again_after_a_backoff_without_spending_a_retry(home) -> None:  # type: ignore[no-untyped-def]
    from stagebus.actors.executor import Executor
    from stagebus.actors.gate import TaskRef
    from stagebus.actors.runtime import INFRA_OPTION, StageActors, make_broker

    store, projections, root = home
    # Given a fleet-style stage actor whose artifact disk is full
    toy.publish(store, root, "r1", {"p0": [{"n": 1}]})
    broker = make_broker("memory")
    executor = Executor(store, FullDisk(root / "art"), toy.registry(2), lookups=projections)
    actors = StageActors(broker, executor, toy.registry(2))
    actors.resend_on_infrastructure = True
    sent = []
    broker.enqueue = lambda message, delay=None: sent.append((message, delay))  # type: ignore[method-assign]
    # When it runs the task's message
    from dramatiq.middleware import CurrentMessage

    from stagebus.actors.runtime import stage_message

    CurrentMessage().before_process_message(broker, stage_message(TaskRef("r1", "load", "nums/p0"), "toy"))
    actors.actors["load"].fn("r1", "nums/p0", "toy")
    # Then it sent itself again, delayed, marked with one fault and no retry spent
    ((message, delay),) = sent
    assert delay == 2000 and message.options[INFRA_OPTION] == 1 and message.options.get("retries", 0) == 0
    projections.catch_up()
    state = projections.run("r1").tasks[("load", "nums/p0")]  # type: ignore[union-attr]
    assert state.status == "waiting" and state.attempts == 1
