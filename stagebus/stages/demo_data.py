"""The demo corpus: docstrings of the Python standard library, as JSON-lines partitions.

Real text nobody on the team wrote, present offline on every machine that runs stagebus. The
sources are read with :mod:`ast`, never imported (importing would run arbitrary module code and
depend on optional C extensions). One partition per top-level package; single-file modules are
grouped by the first letter of their name, so partitions have comparable sizes.

Records: ``{"module": "json.decoder", "qualname": "JSONDecoder.decode", "kind": "method",
"doc": "..."}``; a module's own docstring has ``qualname`` ``""`` and kind ``"module"``.
The output is deterministic for a given Python install: files and definitions are visited in
sorted path order and source order.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import msgspec

DEMO_DATASET = "stdlib"
DEFAULT_PARTITIONS = 32
SMALL_PACKAGES = ("email", "http", "json", "wsgiref")
SMALL_MAX_RECORDS = 80

# Test suites and bundled third-party code are not the standard library's documentation.
_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
                        "lib-dynload", "pydoc_data", "turtledemo"})
# Single-file modules, grouped by first letter (leading underscores ignored).
_MODULE_GROUPS = ("a-c", "d-f", "g-l", "m-o", "p-r", "s", "t-z")
_ENCODE = msgspec.json.Encoder(order="deterministic")

Definition = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


class DocRecord(msgspec.Struct, frozen=True):
    module: str
    qualname: str
    kind: str
    doc: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def write_demo_corpus(dest_dir: Path, limit_partitions: int | None = None,
                      max_records_per_partition: int | None = None, *, small: bool = False,
                      stdlib: Path | None = None) -> list[Path]:
    """Write one ``<partition>.jsonl`` per partition into ``dest_dir``; return their paths.

    The file stem is the partition name (dataset :data:`DEMO_DATASET`). By default the
    :data:`DEFAULT_PARTITIONS` largest groups are written (sorted by name); ``small`` writes a
    few small packages capped at :data:`SMALL_MAX_RECORDS` records each, for tests.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    groups = partition_groups(stdlib or stdlib_root())
    if small:
        groups = {name: files for name, files in groups.items() if name in SMALL_PACKAGES}
        max_records_per_partition = max_records_per_partition or SMALL_MAX_RECORDS
    written: list[Path] = []
    chosen: list[tuple[str, list[DocRecord]]] = []
    for name, files in groups.items():
        records = list(_records_of(files, root=stdlib or stdlib_root()))
        if records:
            chosen.append((name, records[:max_records_per_partition]))
    limit = limit_partitions if limit_partitions is not None else (None if small else DEFAULT_PARTITIONS)
    if limit is not None:
        # The largest groups make the most interesting demo; ties broken by name for determinism.
        keep = {name for name, _ in sorted(chosen, key=lambda c: (-len(c[1]), c[0]))[:limit]}
        chosen = [c for c in chosen if c[0] in keep]
    for name, records in chosen:
        path = dest_dir / f"{name}.jsonl"
        _write_atomically(path, b"".join(_ENCODE.encode(r) + b"\n" for r in records))
        written.append(path)
    return written


def partition_groups(stdlib: Path) -> dict[str, list[Path]]:
    """Partition name -> the source files in it, both sorted."""
    groups: dict[str, list[Path]] = {}
    for entry in sorted(stdlib.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith("__") or name in _SKIP_DIRS or name.startswith(("test_", "_sysconfigdata")):
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            groups[name] = sorted(_package_files(entry))
        elif entry.is_file() and entry.suffix == ".py":
            groups.setdefault(f"modules-{_letter_group(name)}", []).append(entry)
    return dict(sorted(groups.items()))


def _package_files(package: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for file in sorted(files):
            if file.endswith(".py") and not file.startswith("test_"):
                yield Path(directory) / file


def _letter_group(filename: str) -> str:
    first = filename.lstrip("_")[:1].lower() or "_"
    for group in _MODULE_GROUPS:
        low, _, high = group.partition("-")
        if low <= first <= (high or low):
            return group
    return _MODULE_GROUPS[-1]


def _records_of(files: list[Path], root: Path) -> Iterator[DocRecord]:
    for file in files:
        try:
            tree = ast.parse(file.read_bytes(), filename=str(file))
        except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
            continue  # not parseable by this Python (e.g. lib2to3 fixtures): not part of the corpus
        yield from _docstrings(tree, _module_name(file, root))


def _module_name(file: Path, root: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(tree: ast.Module, module: str) -> Iterator[DocRecord]:
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield DocRecord(module, "", "module", doc)
    yield from _definitions(tree.body, module, prefix="", in_class=False)


def _definitions(body: list[ast.stmt], module: str, prefix: str, in_class: bool) -> Iterator[DocRecord]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            kind = "class"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "method" if in_class else "function"
        else:
            continue
        qualname = f"{prefix}{node.name}"
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield DocRecord(module, qualname, kind, doc)
        if isinstance(node, ast.ClassDef):
            # Nested functions are implementation details; nested classes and methods are API.
            yield from _definitions(node.body, module, prefix=f"{qualname}.", in_class=True)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
