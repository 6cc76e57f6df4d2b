"""IndexGroups: the same groups, in the same order, whether it stays in memory or spills to disk."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.stages import grouping
from stagebus.stages.grouping import IndexGroups
from support.reference import ReferenceRun

keys = st.tuples(st.sampled_from(["a", "b", "a.b", "é", "Z", ""]), st.sampled_from(["defines", "mentions"]),
                 st.sampled_from(["record", "name"]))


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(keys, st.integers(0, 50)), max_size=60), spill_at=st.integers(1, 70))
def test_groups_are_sorted_distinct_and_the_same_on_disk(tmp_path_factory: pytest.TempPathFactory,
                                                         pairs: list[tuple[tuple[str, str, str], int]],
                                                         spill_at: int) -> None:
    directory = tmp_path_factory.mktemp("groups")
    names = (directory / f"spill-{n}.part" for n in itertools.count())
    expected: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    with IndexGroups(lambda: next(names), spill_at=spill_at) as groups:
        # Given pairs added, spilling to disk once spill_at of them are held
        for key, index in pairs:
            groups.add(key, index)
            expected[key].add(index)
        # Then each key comes once, keys sorted, its indices sorted and distinct
        assert list(groups.groups()) == [(k, sorted(v)) for k, v in sorted(expected.items())]
        assert groups.spilled == (len(pairs) >= spill_at)
    # And the spill file is gone afterwards
    assert list(directory.iterdir()) == []


def test_extract_spilling_to_disk_writes_the_same_entities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"id,customer_id,note\nO1,C1,see json.decoder.JSONDecoder\nO2,C9,none\nO3,C1,again os.path.join\n"

    def extracted(home: Path) -> bytes:
        home.mkdir()
        run = ReferenceRun(home / "artifacts").open()
        (home / "orders.csv").write_bytes(data)
        run.publish("orders", "2024", home / "orders.csv")
        run.run_partition_stages()
        assert list(run.artifacts.tmp_dir.iterdir()) == []
        return run.artifact_path("extract", "entities", "orders/2024").read_bytes()

    # Given the same partition extracted in memory, and again spilling after two pairs
    in_memory = extracted(tmp_path / "memory")
    monkeypatch.setattr(grouping, "SPILL_AT", 2)
    spilled = extracted(tmp_path / "disk")
    # Then the entities artifact is byte for byte the same
    assert spilled == in_memory and in_memory
