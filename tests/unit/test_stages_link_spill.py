"""The on-disk entity graph of ``link`` agrees with the in-memory reference on every output,
for any entities: definitions, mentions, dotted suffixes (resolved, ambiguous, or none)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.stages.link import EntityGraph
from stagebus.stages.link_spill import SpilledEntityGraph

VALUES = ["x", "y", "x.y", "p.x.y", "q.x.y", "a.b.c", "b.c", "c", "zz.b.c", "é.x", "Z"]
entities = st.lists(st.tuples(
    st.sampled_from(["a/1", "a/2", "b/1"]), st.sampled_from(VALUES), st.sampled_from(["defines", "mentions"]),
    st.sampled_from(["name", "id", "ref"]), st.lists(st.integers(0, 4), min_size=1, max_size=3)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(entities=entities, resolve_suffixes=st.booleans())
def test_the_spilled_graph_answers_exactly_what_the_in_memory_graph_does(
        tmp_path_factory: object, entities: list[tuple[str, str, str, str, list[int]]], resolve_suffixes: bool) -> None:
    directory = Path(tmp_path_factory.mktemp("spill"))  # type: ignore[attr-defined]
    reference = EntityGraph(resolve_suffixes)
    with SpilledEntityGraph(directory / "graph.part", resolve_suffixes) as spilled:
        # Given the same entities added to both
        for ref, value, role, kind, records in entities:
            reference.add(ref, value, role, kind, records)
            spilled.add(ref, value, role, kind, records)
        reference.resolve()
        spilled.resolve()
        # Then nodes, edges, record links and counts are the same, in the same order
        edges = reference.edges()
        assert list(spilled.nodes()) == reference.nodes()
        assert list(spilled.edges()) == edges
        assert list(spilled.record_links()) == reference.record_links()
        cross = sum(e.cross_partition for e in edges)
        assert spilled.counts(3, len(edges), cross) == reference.counts(3, len(edges), cross)
    # And the file is gone once the graph is closed
    assert not (directory / "graph.part").exists()
