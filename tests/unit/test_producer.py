"""The producer: checked, hashed, keyed, idempotent announcements of partitions and seals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stagebus.errors import InvalidInput, StoreError
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.producer import Producer, check_name, new_run_id
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore

from .conftest import PLAN


@pytest.fixture
def producer(store: MemoryEventStore, projections: Projections) -> Producer:
    return Producer(store, "reference", PLAN, "1", projections=projections)


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "airports.csv"
    path.write_text("iata,name\nSFO,San Francisco\n")
    return path


def events(store: MemoryEventStore) -> list[object]:
    return [r.event() for r in store.read()]


def test_publishing_into_a_new_run_opens_it_in_the_same_batch(producer: Producer, store: MemoryEventStore,
                                                              csv: Path) -> None:
    # Given an empty log
    # When publishing a partition into a run that does not exist yet
    result = producer.publish("airports", "state=CA", csv, run_id="r1")
    # Then the run is opened with the plan, and the partition announced, both stored
    opened, ingested = events(store)
    assert isinstance(opened, RunOpened) and (opened.run_id, opened.plan) == ("r1", PLAN)
    assert isinstance(ingested, PartitionIngested)
    assert (result.run_id, result.position, result.stored) == ("r1", 2, True)


def test_a_published_partition_names_the_files_absolute_uri_hash_and_size(producer: Producer,
                                                                           store: MemoryEventStore,
                                                                           csv: Path) -> None:
    # Given a CSV file
    # When publishing it with metadata
    producer.publish("airports", "state=CA", csv, {"source": "faa"}, run_id="r1")
    # Then the event carries the file's URI, sha256, size and the metadata
    ingested = events(store)[-1]
    assert isinstance(ingested, PartitionIngested)
    assert ingested.uri == csv.resolve().as_uri()
    assert ingested.content_hash == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert (ingested.size, ingested.metadata) == (csv.stat().st_size, {"source": "faa"})


def test_publishing_the_same_partition_twice_stores_it_once(producer: Producer, store: MemoryEventStore,
                                                            csv: Path) -> None:
    # Given a published partition
    first = producer.publish("airports", "state=CA", csv, run_id="r1")
    # When a retry publishes it again
    again = producer.publish("airports", "state=CA", csv, run_id="r1")
    # Then nothing is stored and the answer names the first event
    assert (again.stored, again.position, again.same_content) == (False, first.position, True)
    assert store.head() == 2


def test_republishing_a_partition_with_other_bytes_says_the_content_differs(producer: Producer, csv: Path) -> None:
    # Given a published partition
    producer.publish("airports", "state=CA", csv, run_id="r1")
    # When the same key is published with a changed file
    csv.write_text("iata\nLAX\n")
    again = producer.publish("airports", "state=CA", csv, run_id="r1")
    # Then the log keeps the first, and the answer says the bytes differ
    assert (again.stored, again.same_content) == (False, False)


def test_opening_an_open_run_stores_nothing(producer: Producer, store: MemoryEventStore) -> None:
    # Given an open run
    producer.open_run("r1")
    # When opening it again
    producer.open_run("r1")
    # Then the log holds one RunOpened
    assert store.head() == 1


def test_a_run_of_another_pipeline_is_refused(producer: Producer, store: MemoryEventStore, csv: Path) -> None:
    # Given a run opened by another pipeline
    Producer(store, "other", PLAN).open_run("r1")
    # When this producer publishes into it
    # Then it is refused, nothing stored
    with pytest.raises(InvalidInput, match="belongs to pipeline 'other'"):
        producer.publish("airports", "state=CA", csv, run_id="r1")
    assert store.head() == 1


@pytest.mark.parametrize("name", ["", "..", "a..b", "a/b", "a\\b", "a\nb", "a\x00b", "a\x1bb", " a", "a\u200bb"])
def test_a_bad_partition_name_is_refused_before_anything_is_stored(producer: Producer, store: MemoryEventStore,
                                                                   csv: Path, name: str) -> None:
    # Given an empty log
    # When publishing a partition with a name that is empty, climbs, has a separator or an invisible character
    with pytest.raises(InvalidInput) as refused:
        producer.publish("airports", name, csv, run_id="r1")
    # Then it is refused with one line, and nothing is stored
    assert "\n" not in str(refused.value)
    assert store.head() == 0


@pytest.mark.parametrize("name", ["..", "x/y", "tab\there"])
def test_a_bad_dataset_or_run_name_is_refused(producer: Producer, store: MemoryEventStore, csv: Path,
                                              name: str) -> None:
    # Given an empty log
    # When the dataset or the run id is bad
    # Then both are refused and nothing is stored
    with pytest.raises(InvalidInput):
        producer.publish(name, "p", csv, run_id="r1")
    with pytest.raises(InvalidInput):
        producer.publish("airports", "p", csv, run_id=name)
    assert store.head() == 0


def test_a_missing_file_is_refused(producer: Producer, store: MemoryEventStore, tmp_path: Path) -> None:
    # Given no file at the path
    # When publishing it
    # Then it is refused, naming the path, and nothing is stored
    with pytest.raises(InvalidInput, match="no such file"):
        producer.publish("airports", "p", tmp_path / "missing.csv", run_id="r1")
    assert store.head() == 0


def test_a_directory_is_refused(producer: Producer, store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a directory where a file is expected
    # When publishing it
    # Then it is refused and nothing is stored
    with pytest.raises(InvalidInput, match="not a regular file"):
        producer.publish("airports", "p", tmp_path, run_id="r1")
    assert store.head() == 0


def test_an_empty_file_is_refused(producer: Producer, store: MemoryEventStore, tmp_path: Path) -> None:
    # Given an empty file
    empty = tmp_path / "empty.csv"
    empty.touch()
    # When publishing it
    # Then it is refused and nothing is stored
    with pytest.raises(InvalidInput, match="is empty"):
        producer.publish("airports", "p", empty, run_id="r1")
    assert store.head() == 0


@pytest.mark.parametrize("metadata", [{"": "x"}, {"k": "a\nb"}, {" k": "v"}])
def test_malformed_metadata_is_refused(producer: Producer, store: MemoryEventStore, csv: Path,
                                       metadata: dict[str, str]) -> None:
    # Given metadata with an empty key, a control character or a padded key
    # When publishing with it
    # Then it is refused and nothing is stored
    with pytest.raises(InvalidInput):
        producer.publish("airports", "p", csv, metadata, run_id="r1")
    assert store.head() == 0


def test_sealing_lists_the_runs_partitions_in_log_order(producer: Producer, store: MemoryEventStore,
                                                        csv: Path) -> None:
    # Given a run with two partitions
    producer.publish("airports", "state=NY", csv, run_id="r1")
    producer.publish("airports", "state=CA", csv, run_id="r1")
    # When sealing it
    result = producer.seal("r1")
    # Then RunSealed lists both refs in the order they were published
    sealed = events(store)[-1]
    assert result.stored and isinstance(sealed, RunSealed)
    assert sealed.partitions == ("airports/state=NY", "airports/state=CA")


def test_sealing_without_projections_reads_the_partitions_from_the_log(store: MemoryEventStore,
                                                                       csv: Path) -> None:
    # Given a producer without projections and a run with one partition
    producer = Producer(store, "reference", PLAN)
    producer.publish("airports", "state=CA", csv, run_id="r1")
    # When sealing
    producer.seal("r1")
    # Then the seal lists the partition
    sealed = events(store)[-1]
    assert isinstance(sealed, RunSealed) and sealed.partitions == ("airports/state=CA",)


def test_sealing_twice_stores_one_seal(producer: Producer, store: MemoryEventStore, csv: Path) -> None:
    # Given a sealed run
    producer.publish("airports", "state=CA", csv, run_id="r1")
    first = producer.seal("r1")
    # When sealing it again
    again = producer.seal("r1")
    # Then nothing is stored
    assert (again.stored, again.position) == (False, first.position)
    assert store.head() == 3


def test_sealing_a_run_never_opened_is_refused(producer: Producer, store: MemoryEventStore) -> None:
    # Given an empty log
    # When sealing an unknown run
    # Then it is refused
    with pytest.raises(InvalidInput, match="never opened"):
        producer.seal("r1")


def test_sealing_a_run_without_partitions_is_refused(producer: Producer, store: MemoryEventStore) -> None:
    # Given an open run with no partition
    producer.open_run("r1")
    # When sealing it
    # Then it is refused and nothing more is stored
    with pytest.raises(InvalidInput, match="no partitions"):
        producer.seal("r1")
    assert store.head() == 1


def test_publishing_into_a_sealed_run_is_refused(producer: Producer, store: MemoryEventStore, csv: Path,
                                                  tmp_path: Path) -> None:
    # Given a sealed run
    producer.publish("airports", "state=CA", csv, run_id="r1")
    producer.seal("r1")
    # When publishing a new partition into it
    # Then it is refused and nothing is stored
    with pytest.raises(InvalidInput, match="sealed"):
        producer.publish("airports", "state=NY", csv, run_id="r1")
    assert store.head() == 3


def test_a_retry_of_a_partition_of_a_sealed_run_is_still_an_answer(producer: Producer, csv: Path) -> None:
    # Given a sealed run with a partition
    producer.publish("airports", "state=CA", csv, run_id="r1")
    producer.seal("r1")
    # When a retry publishes that partition again
    again = producer.publish("airports", "state=CA", csv, run_id="r1")
    # Then it is answered as already stored, not refused
    assert again.stored is False


def test_the_projections_see_a_publish_at_once(producer: Producer, projections: Projections, csv: Path) -> None:
    # Given a producer with projections
    # When publishing
    producer.publish("airports", "state=CA", csv, run_id="r1")
    # Then the projections have caught up
    assert projections.lag() == 0
    assert projections.partition("airports", "state=CA").status == "pending"


def test_a_new_run_id_is_a_valid_name_that_sorts_by_time() -> None:
    # Given two generated run ids
    ids = [new_run_id(), new_run_id()]
    # Then both are valid names, distinct, and start with a UTC timestamp
    assert [check_name("run id", i) for i in ids] == ids and ids[0] != ids[1]
    assert ids[0][:8].isdigit() and ids[0][8] == "T"


def test_a_catch_up_failing_after_the_append_names_what_was_stored(store: MemoryEventStore, tmp_path: Path,
                                                                  csv: Path) -> None:
    # Given projections built from another log (they refuse to follow this one)
    other = MemoryEventStore()
    with Projections(other, tmp_path / "p") as projections:
        Producer(other, "reference", (), projections=projections).publish("x", "y", csv, run_id="o1")
    with Projections(store, tmp_path / "p") as projections:
        producer = Producer(store, "reference", (), projections=projections)
        # When a partition is published, Then the error names the run and positions it stored
        with pytest.raises(StoreError) as failed:
            producer.publish("airports", "p", csv, run_id="r1")
    assert "run_opened r1 at position 1" in str(failed.value)
    assert "partition_ingested r1 at position 2" in str(failed.value)
    assert store.head() == 2
