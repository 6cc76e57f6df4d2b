"""Names on disk: refused when they cannot be stored, and mapped to paths by one injective encoding."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.artifacts.local import ArtifactStore
from stagebus.artifacts.names import task_dir
from stagebus.errors import InvalidInput
from stagebus.events import RUN_SCOPE, partition_ref
from stagebus.producer import check_name

NAME_MAX = 255  # bytes in one path component on every filesystem stagebus supports


def valid(kind: str, name: str) -> bool:
    try:
        check_name(kind, name)
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize("name", [".", "..", "...", "....."])
def test_a_dot_only_name_is_refused_for_every_kind(name: str) -> None:
    # Given a name made only of dots, When it is checked as a dataset, partition or run id,
    # Then each is refused with one line saying why
    for kind in ("dataset", "partition", "run id"):
        with pytest.raises(InvalidInput, match="only dots") as refused:
            check_name(kind, name)
        assert "\n" not in str(refused.value) and kind in str(refused.value)


def test_a_name_too_long_for_the_disk_in_utf8_bytes_is_refused_though_it_has_few_characters() -> None:
    # Given 64 emoji: 64 characters, 256 bytes of UTF-8, far more once encoded for the disk
    name = "\N{GRINNING FACE}" * 64
    # When it is checked, Then it is refused, counting bytes, not characters
    with pytest.raises(InvalidInput, match="bytes") as refused:
        check_name("partition", name)
    assert "\n" not in str(refused.value)


def test_the_longest_names_that_pass_still_fit_in_one_path_component() -> None:
    # Given the longest plain and the longest emoji names that pass the check
    plain = "a" * 255
    emoji = "\N{GRINNING FACE}" * 21  # 84 bytes, 252 on disk
    assert valid("partition", plain) and valid("partition", emoji)
    assert not valid("partition", plain + "a") and not valid("partition", emoji + "\N{GRINNING FACE}")
    # Then each component of their task directory is at most NAME_MAX bytes
    for name in (plain, emoji):
        parts = task_dir(name, "normalize", partition_ref(name, name)).parts
        assert max(len(part.encode()) for part in parts) <= NAME_MAX


@pytest.mark.parametrize("name", ["airports", "state=CA", "2024-01-31", "a_b.c", "v1.2.3", "x=1.5"])
def test_common_names_read_the_same_on_disk(name: str) -> None:
    # Given a name of letters, digits, '-', '_', '.', '=' not starting with a dot
    # Then its directory is the name itself, so existing homes keep their layout
    assert task_dir("r1", "ingest", partition_ref("airports", name)) == PurePosixPath("r1", "ingest", "airports", name)


@pytest.mark.parametrize(("name", "on_disk"), [
    (".hidden", "%2Ehidden"),
    ("a%2Eb", "a%252Eb"),  # '%' itself is encoded, so no name can forge another's escape
    ("new york", "new%20york"),
    ("café", "caf%C3%A9"),
    ("*", "%2A"),
    ("_run", "%5Frun"),  # the run-level task's own directory name is reserved
])
def test_other_bytes_are_percent_encoded(name: str, on_disk: str) -> None:
    assert task_dir("r1", "ingest", partition_ref(name, "p")).parts[2] == on_disk


def test_the_run_level_task_and_every_partition_have_separate_directories(tmp_path: Path) -> None:
    # Given the run-level task and a partition named like the run-level directory and its files
    store = ArtifactStore(tmp_path)
    run_level = store.manifest_path("r1", "link", RUN_SCOPE)
    lookalike = store.manifest_path("r1", "link", partition_ref("_run", "manifest.json"))
    # Then neither path is, or is inside, the other's directory
    assert run_level != lookalike
    assert run_level.parent not in lookalike.parents and lookalike.parent not in run_level.parents
    assert store.work_dir("r1", "link", RUN_SCOPE) not in store.work_dir("r1", "link", "_run/x").parents


NAMES = st.one_of(
    st.sampled_from([".", "..", ".a", "a.", "_run", "*", "%", "%2E", "%2e", "a=b", "foo", "items.jsonl",
                     "manifest.json", " ", "\N{GRINNING FACE}"]),
    st.text(alphabet=st.sampled_from("a.=_-%*/ é\N{GRINNING FACE}"), min_size=1, max_size=12),
    st.text(min_size=1, max_size=90),
)


@settings(max_examples=400, deadline=None)
@given(first=st.tuples(NAMES, NAMES), second=st.tuples(NAMES, NAMES), run=NAMES)
def test_distinct_valid_names_never_share_a_directory(first: tuple[str, str], second: tuple[str, str],
                                                      run: str) -> None:
    # Given two distinct (dataset, partition) pairs that pass validation, in one run
    if first == second or not all(valid("name", n) for n in (*first, *second, run)):
        return
    one = task_dir(run, "normalize", partition_ref(*first))
    two = task_dir(run, "normalize", partition_ref(*second))
    # Then their directories differ, neither is inside the other, and no component is a path
    # separator, a dot-only name, hidden, or longer than one component may be
    assert one != two and one not in two.parents and two not in one.parents
    for path in (one, two):
        assert len(path.parts) == 4
        for part in path.parts:
            assert "/" not in part and "\\" not in part and "\x00" not in part
            assert part.strip(".") and not part.startswith(".")
            assert len(part.encode()) <= NAME_MAX
