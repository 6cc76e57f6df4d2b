"""The eventsourcing library's SQLite application recorder doing stagebus's appends and reads.

Runs in the peer venv; prints JSON figures. Input: a file of stagebus event payloads (JSON, one
per line, as ``stagebus.events.encode`` makes them: alternating StageStarted and keyed
ManifestWritten). Each stage task is an aggregate (a UUID per task): its StageStarted is
version 1, its ManifestWritten version 2, so eventsourcing's (originator_id, version) primary
key does what our manifest key does, refuse a second copy.

Measures, best of ``repeats`` each on a fresh database file:
- append x1: one ``insert_events([event])`` per event (one transaction each);
- append xN: ``insert_events(batch)``, one transaction per batch of N;
- replay: ``select_notifications`` in pages of 1000 + the library's ``JSONTranscoder.decode``
  of each state (what its mapper does before building a domain event).

Connections use ``PRAGMA synchronous = NORMAL``, stagebus's own setting (eventsourcing's
default is SQLite's FULL, an fsync per commit), so both sides pay for the same durability.

Usage: python eventsourcing_log.py PAYLOADS_FILE SINGLE_COUNT REPEATS
"""

import json
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool, SQLiteDatastore

_create_connection = SQLiteConnectionPool._create_connection


def _normal_sync(self):  # type: ignore[no-untyped-def]
    connection = _create_connection(self)
    connection._sqlite_conn.execute("PRAGMA synchronous = NORMAL")
    return connection


SQLiteConnectionPool._create_connection = _normal_sync  # type: ignore[method-assign]

TOPICS = ("stagebus.events:StageStarted", "stagebus.events:ManifestWritten")


def stored_events(payloads: list[bytes]) -> list[StoredEvent]:
    events = []
    for index, payload in enumerate(payloads):
        task = uuid.UUID(int=index // 2 + 1)
        events.append(StoredEvent(originator_id=task, originator_version=index % 2 + 1,
                                  topic=TOPICS[index % 2], state=payload))
    return events


def fresh_recorder(directory: Path, made: list[int]) -> SQLiteApplicationRecorder:
    made[0] += 1
    datastore = SQLiteDatastore(str(directory / f"es-{made[0]}.db"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def best(repeats: int, count: int, setup, work) -> float:  # type: ignore[no-untyped-def]
    rate = 0.0
    for _ in range(repeats):
        target = setup()
        started = time.perf_counter()
        work(target)
        rate = max(rate, count / (time.perf_counter() - started))
    return rate


def main() -> None:
    payloads = Path(sys.argv[1]).read_bytes().splitlines()
    single_count, repeats = int(sys.argv[2]), int(sys.argv[3])
    events = stored_events(payloads)
    transcoder = JSONTranscoder()
    figures: dict[str, float] = {}
    made = [0]
    with tempfile.TemporaryDirectory(prefix="es-bench-") as tmp:
        directory = Path(tmp)

        def fresh() -> SQLiteApplicationRecorder:
            return fresh_recorder(directory, made)

        def singles(recorder: SQLiteApplicationRecorder) -> None:
            for event in events[:single_count]:
                recorder.insert_events([event])

        figures["append x1"] = best(repeats, single_count, fresh, singles)
        for size in (100, 1000):
            def batches(recorder: SQLiteApplicationRecorder, size: int = size) -> None:
                for start in range(0, len(events), size):
                    recorder.insert_events(events[start : start + size])

            figures[f"append x{size}"] = best(repeats, len(events), fresh, batches)
        full = fresh()
        full.insert_events(events)

        def replay(recorder: SQLiteApplicationRecorder) -> None:
            start, count = 1, 0
            while page := recorder.select_notifications(start, 1000):
                for notification in page:
                    transcoder.decode(notification.state)
                count += len(page)
                start = page[-1].id + 1
            assert count == len(events), count

        figures["replay"] = best(repeats, len(events), lambda: full, replay)
    print(json.dumps({"peer": "eventsourcing", "version": version("eventsourcing"), "events": len(events),
                      "per_s": figures}))


if __name__ == "__main__":
    main()
