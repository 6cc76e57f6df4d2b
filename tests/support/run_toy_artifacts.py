"""Run the toy pipeline on any artifact store: ``python run_toy_artifacts.py HOME ARTIFACTS [publish N]``.

``ARTIFACTS`` is what ``STAGEBUS_ARTIFACTS`` takes (a directory or ``s3://bucket/prefix``; the
AWS variables say where S3 is). With ``STAGEBUS_TEST_KILL_AFTER_STORE`` naming a file that
exists, the process SIGKILLs itself right after the first non-empty object is stored, before
the manifest that would reference it is appended: the crash the artifact contract tests.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.artifacts import open_artifacts
from stagebus.artifacts.pending import EMPTY_SHA256
from stagebus.projections.reader import Projections
from stagebus.settings import Settings
from stagebus.store import SqliteEventStore
from support import toy


def main() -> int:
    home = Path(sys.argv[1])
    store = SqliteEventStore(home / "log.db")
    if len(sys.argv) > 3 and sys.argv[3] == "publish":
        toy.publish(store, home, "r1", {f"p{i:03d}": [{"n": i}, {"n": i + 1}] for i in range(int(sys.argv[4]))})
        return 0
    artifacts = open_artifacts(Settings(home=home, artifacts=sys.argv[2]))
    flag = os.environ.get("STAGEBUS_TEST_KILL_AFTER_STORE")
    if flag:
        stored = artifacts.store_object

        def store_then_die(temp: Path, sha256: str, size: int) -> None:
            stored(temp, sha256, size)
            if sha256 != EMPTY_SHA256 and Path(flag).exists():
                Path(flag).write_text(artifacts.object_path(sha256))
                os.kill(os.getpid(), signal.SIGKILL)

        artifacts.store_object = store_then_die  # type: ignore[method-assign]
    projections = Projections(store, home / "projections")
    with EmbeddedRunner(store, projections, artifacts, toy.registry(), workers=1) as runner:
        report = runner.run()
    print(f"swept={report.swept} outcomes={dict(report.outcomes)} failed={len(report.failed)}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
