"""The demo corpus: stdlib docstrings read with ast, grouped into partitions, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

from stagebus.stages.demo_data import DEFAULT_PARTITIONS, SMALL_PACKAGES, write_demo_corpus


def fake_stdlib(root: Path) -> Path:
    """A tiny stand-in for the stdlib: a package, single modules, tests and a broken file."""
    (root / "pkg" / "tests").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text('"""The package."""\n')
    (root / "pkg" / "core.py").write_text(
        '"""Core."""\n'
        'class Engine:\n    """Runs things."""\n    def start(self):\n        """Start it."""\n'
        '        def helper():\n            """Nested helper, not API."""\n'
        'def undocumented():\n    pass\n'
        'async def fetch():\n    """Fetch."""\n'
    )
    (root / "pkg" / "tests" / "test_core.py").write_text('"""Tests."""\n')
    (root / "test").mkdir()
    (root / "test" / "__init__.py").write_text('"""Regression tests."""\n')
    (root / "alpha.py").write_text('"""Alpha."""\n')
    (root / "broken.py").write_text('"""Broken."""\ndef (:\n')
    (root / "latin.py").write_bytes(b'"""Caf\xe9."""\n')  # not UTF-8 and no coding cookie
    return root


def read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_carry_module_qualname_kind_and_doc(tmp_path: Path) -> None:
    # Given a package with a class, a method and an async function
    stdlib = fake_stdlib(tmp_path / "lib")
    # When the corpus is written
    paths = write_demo_corpus(tmp_path / "out", stdlib=stdlib)
    # Then the package's partition has one record per documented definition, in source order
    (pkg,) = [p for p in paths if p.stem == "pkg"]
    assert [(r["module"], r["qualname"], r["kind"], r["doc"]) for r in read(pkg)] == [
        ("pkg", "", "module", "The package."),
        ("pkg.core", "", "module", "Core."),
        ("pkg.core", "Engine", "class", "Runs things."),
        ("pkg.core", "Engine.start", "method", "Start it."),
        ("pkg.core", "fetch", "function", "Fetch."),
    ]


def test_single_modules_are_grouped_by_first_letter(tmp_path: Path) -> None:
    # Given single-file modules
    paths = write_demo_corpus(tmp_path / "out", stdlib=fake_stdlib(tmp_path / "lib"))
    # Then alpha is in the a-c group
    assert [r["module"] for r in read(tmp_path / "out" / "modules-a-c.jsonl")] == ["alpha"]
    assert sorted(p.stem for p in paths) == ["modules-a-c", "pkg"]


def test_test_packages_and_unreadable_files_are_skipped(tmp_path: Path) -> None:
    # Given test packages, a file that does not parse and one that does not decode
    paths = write_demo_corpus(tmp_path / "out", stdlib=fake_stdlib(tmp_path / "lib"))
    # Then none of them reach the corpus
    modules = {r["module"] for p in paths for r in read(p)}
    assert modules == {"alpha", "pkg", "pkg.core"}


def test_limits_cap_partitions_and_records(tmp_path: Path) -> None:
    # Given limits of one partition of two records
    paths = write_demo_corpus(tmp_path / "out", limit_partitions=1, max_records_per_partition=2,
                              stdlib=fake_stdlib(tmp_path / "lib"))
    # Then the largest partition is written, cut to two records
    assert [p.stem for p in paths] == ["pkg"]
    assert len(read(paths[0])) == 2


def test_small_corpus_is_a_few_packages_of_a_few_hundred_records(tmp_path: Path) -> None:
    # When the small corpus is written from this Python's stdlib
    paths = write_demo_corpus(tmp_path / "out", small=True)
    # Then it has the small packages, and a few hundred records in all
    assert [p.stem for p in paths] == sorted(SMALL_PACKAGES)
    total = sum(len(read(p)) for p in paths)
    assert 100 <= total <= 400


def test_corpus_is_byte_identical_when_written_twice(tmp_path: Path) -> None:
    # When the small corpus is written into two directories
    first = write_demo_corpus(tmp_path / "one", small=True)
    second = write_demo_corpus(tmp_path / "two", small=True)
    # Then the files are the same bytes
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_default_corpus_has_twenty_to_forty_partitions(tmp_path: Path) -> None:
    # When the default corpus is written from this Python's stdlib
    paths = write_demo_corpus(tmp_path / "out")
    # Then it has the partitions the demo is sized for, none of them empty
    assert 20 <= len(paths) == DEFAULT_PARTITIONS <= 40
    assert all(p.stat().st_size > 0 for p in paths)
