"""Run the toy pipeline in embedded mode over a home: ``python run_toy.py HOME [publish N]``.

Used by crash tests as a real subprocess that can be SIGKILLed mid-stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support import toy


def main() -> int:
    home = Path(sys.argv[1])
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    if len(sys.argv) > 2 and sys.argv[2] == "publish-poison":
        toy.publish(store, home, "r1", {"ok": [{"n": 1}], "deadly": [{"n": 2, "act": "kill-always"}]})
        return 0
    if len(sys.argv) > 2 and sys.argv[2] == "publish":
        n = int(sys.argv[3])
        parts = {f"p{i:03d}": [{"n": j} for j in range(6)] for i in range(n)}
        parts["p001"] = [{"n": 1}, {"n": 2}, {"n": 3, "act": "kill"}, {"n": 4}]
        toy.publish(store, home, "r1", parts)
        return 0
    with EmbeddedRunner(store, projections, home / "art", toy.registry(), workers=2) as runner:
        report = runner.run()
    print(f"swept={report.swept} outcomes={dict(report.outcomes)} failed={len(report.failed)}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
