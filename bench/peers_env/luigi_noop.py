"""The no-op six-stage pipeline in Luigi; runs in the peer venv, prints JSON figures.

Shape, as stagebus's no-op pipeline: Ingest -> Normalize -> Extract per partition, then
Link (requires every Extract) -> Index -> Serve: 3N + 3 tasks, one ``luigi.build`` with the
local scheduler. Luigi decides completion by a task's output target, so each task writes an
empty marker file, as each of ours records a manifest. One worker: Luigi's extra workers are
forked processes, slower for tasks that do nothing (``--workers 2`` to see).

Usage: python luigi_noop.py PARTITIONS [--workers N]
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

started_import = time.perf_counter()
import luigi  # noqa: E402

IMPORT_S = time.perf_counter() - started_import
ROOT = Path(tempfile.mkdtemp(prefix="luigi-noop-"))


class Marker(luigi.Task):
    def output(self) -> luigi.LocalTarget:
        name = "-".join([type(self).__name__, *(str(v) for v in self.param_kwargs.values())])
        return luigi.LocalTarget(str(ROOT / name))

    def run(self) -> None:
        with self.output().open("w"):
            pass


class Ingest(Marker):
    partition = luigi.Parameter()


class Normalize(Marker):
    partition = luigi.Parameter()

    def requires(self) -> luigi.Task:
        return Ingest(self.partition)


class Extract(Marker):
    partition = luigi.Parameter()

    def requires(self) -> luigi.Task:
        return Normalize(self.partition)


class Link(Marker):
    count = luigi.IntParameter()

    def requires(self) -> list[luigi.Task]:
        return [Extract(f"p{i}") for i in range(self.count)]


class Index(Marker):
    count = luigi.IntParameter()

    def requires(self) -> luigi.Task:
        return Link(self.count)


class Serve(Marker):
    count = luigi.IntParameter()

    def requires(self) -> luigi.Task:
        return Index(self.count)


def main() -> None:
    count = int(sys.argv[1])
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 1
    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    started = time.perf_counter()
    ok = luigi.build([Serve(count)], local_scheduler=True, workers=workers, log_level="WARNING")
    seconds = time.perf_counter() - started
    assert ok and len(list(ROOT.iterdir())) == 3 * count + 3
    print(json.dumps({"peer": "luigi", "version": luigi.__version__, "partitions": count,
                      "tasks": 3 * count + 3, "seconds": seconds, "import_s": IMPORT_S, "workers": workers,
                      "shape": "one build, local scheduler"}))


if __name__ == "__main__":
    main()
