"""The Python producer API, as a producer process would use it."""

from __future__ import annotations

from pathlib import Path

import stagebus
from stagebus.projections import Projections
from stagebus.store import SqliteEventStore


def test_open_producer_publishes_idempotently_into_a_home(tmp_path: Path) -> None:
    # Given a producer on a fresh home and a partition file
    data = tmp_path / "ca.csv"
    data.write_text("code,name\nSFO,San Francisco\n")
    producer = stagebus.open_producer(home=tmp_path / "home")
    run_id = producer.open_run()
    # When it publishes the same partition twice (a retry) and seals
    first = producer.publish("airports", "state=CA", data, {"source": "faa"}, run_id=run_id)
    again = producer.publish("airports", "state=CA", data, {"source": "faa"}, run_id=run_id)
    sealed = producer.seal(run_id)
    # Then one event is stored, the retry is told so, and the run is sealed with that partition
    assert first.stored and not again.stored and again.position == first.position and sealed.stored
    store = SqliteEventStore(tmp_path / "home" / "log.db")
    assert [r.type for r in store.read()] == ["run_opened", "partition_ingested", "run_sealed"]
    run = Projections(store, tmp_path / "home" / "projections").run(run_id)
    assert run is not None and run.sealed_partitions == ("airports/state=CA",)
