"""link through the real Executor: one node per identity, edges across partitions, unresolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stagebus.actors.executor import Outcome
from stagebus.stages import link as link_module
from support.reference import ReferenceRun

CUSTOMERS = b"id,name\nC1,Ann\nC2,Bob\n"
ORDERS = b"id,customer_id,note\nO1,C1,see json.decoder.JSONDecoder\nO2,C9,none\nO3,C1,again\n"


@pytest.fixture
def run(tmp_path: Path) -> ReferenceRun:
    """Customers and orders in two partitions, linked."""
    run = ReferenceRun(tmp_path / "artifacts").open()
    for name, data in (("customers", CUSTOMERS), ("orders", ORDERS)):
        source = tmp_path / f"{name}.csv"
        source.write_bytes(data)
        run.publish(name, "2024", source)
    run.run_partition_stages()
    run.seal()
    assert run.execute("link") is Outcome.COMPLETE
    return run


def node(run: ReferenceRun, value: str) -> dict[str, Any]:
    (found,) = [n for n in run.records("link", "nodes") if n["value"] == value]
    return found


def test_link_waits_for_the_run_to_be_sealed(tmp_path: Path) -> None:
    # Given a run whose partitions are extracted but not sealed
    run = ReferenceRun(tmp_path / "artifacts").open()
    source = tmp_path / "c.csv"
    source.write_bytes(CUSTOMERS)
    run.publish("customers", "2024", source)
    run.run_partition_stages()
    # When link is asked to run, Then it is refused
    assert run.execute("link") is Outcome.REFUSED


def test_same_identity_across_partitions_is_one_node(run: ReferenceRun) -> None:
    # Then C1, defined by customers and mentioned twice by orders, is one node
    assert node(run, "C1") == {"value": "C1", "kinds": ["customer_id", "record"],
                               "defined_in": ["customers/2024#2"], "mentioned_by": 2,
                               "partitions": ["customers/2024", "orders/2024"]}


def test_references_across_partitions_become_edges(run: ReferenceRun) -> None:
    # Then each order mentioning C1 is an edge from the order to the customer, across partitions
    edges = [e for e in run.records("link", "edges") if e["target"] == "C1"]
    assert edges == [{"source": "O1", "target": "C1", "weight": 1, "cross_partition": True},
                     {"source": "O3", "target": "C1", "weight": 1, "cross_partition": True}]


def test_references_defined_nowhere_are_counted_unresolved(run: ReferenceRun) -> None:
    # Then the mentions of C9 and of the dotted name are unresolved; the C1 ones resolved
    (counts,) = run.records("link", "counts")
    assert (counts["resolved_references"], counts["unresolved_references"], counts["unresolved_entities"]) == (2, 2, 2)
    assert node(run, "C9")["defined_in"] == []


def test_record_link_counts_go_both_ways(run: ReferenceRun) -> None:
    # Then the customer is linked in twice and each order mentioning it out once
    links = {(r["partition"], r["index"]): (r["links_in"], r["links_out"]) for r in run.records("link", "record_links")}
    assert links == {("customers/2024", 2): (2, 0), ("orders/2024", 2): (0, 1), ("orders/2024", 4): (0, 1)}


def test_dotted_mention_resolves_to_the_one_definition_it_is_a_suffix_of(tmp_path: Path) -> None:
    # Given a module defining JSONDecoder.decode and another mentioning it without its module
    run = ReferenceRun(tmp_path / "artifacts").open()
    for name, record in (("a", '{"module": "json.decoder", "qualname": "JSONDecoder.decode", "doc": "x"}'),
                         ("b", '{"module": "tool", "qualname": "main", "doc": "calls JSONDecoder.decode"}')):
        source = tmp_path / f"{name}.jsonl"
        source.write_text(record + "\n")
        run.publish("docs", name, source)
    run.run_all()
    # Then the mention is an edge to the full name
    assert run.records("link", "edges") == [{"source": "tool.main", "target": "json.decoder.JSONDecoder.decode",
                                             "weight": 1, "cross_partition": True}]


def test_a_run_too_large_for_memory_links_on_disk_to_the_same_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the same customers and orders linked in memory, and again with every run spilled
    def linked(home: Path) -> ReferenceRun:
        home.mkdir()
        run = ReferenceRun(home / "artifacts").open()
        for name, data in (("customers", CUSTOMERS), ("orders", ORDERS)):
            (home / f"{name}.csv").write_bytes(data)
            run.publish(name, "2024", home / f"{name}.csv")
        run.run_partition_stages()
        run.seal()
        assert run.execute("link") is Outcome.COMPLETE
        return run

    in_memory = linked(tmp_path / "memory")
    monkeypatch.setattr(link_module, "SPILL_BYTES", 0)
    spilled = linked(tmp_path / "disk")
    # Then every output is byte for byte the same, and no spill file is left behind
    for output in ("nodes", "edges", "record_links", "counts"):
        assert spilled.records("link", output) == in_memory.records("link", output)
        ours, reference = spilled.artifact_path("link", output), in_memory.artifact_path("link", output)
        assert ours.read_bytes() == reference.read_bytes()
    assert list(spilled.artifacts.tmp_dir.iterdir()) == []
