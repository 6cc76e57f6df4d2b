"""Cost of a serve switch: one changed partition into a served view of 1k and 100k partitions.

For each size N, an index file of N partitions (``--records`` records each, airports-like rows)
is built with the index stage's own writer. Baseline, in the same run: a **full rebuild** of the
served database of that size (the old model rebuilt and copied everything per run): one switch
of the N-partition index into an empty served database, FTS5 included. Ours: the switch of a run
that carries one partition whose content changed (the cumulative model), into that database of
N partitions: delete its rows, insert the new ones, update its metadata, in one transaction.
ratio = incremental switch / full rebuild; lower is better. Incremental switches alternate two
contents of the same partition (each one replaces), best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench import print_table
from stagebus.stages.index import Row, build_index, record_digest, split_text
from stagebus.stages.served import open_writer, served_path, switch

DEFAULT_JSON = Path(__file__).parent / "results-serve.json"
NAME_FIELDS = ("name",)
_JSON = msgspec.json.Encoder(order="deterministic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 partitions instead of 1k and 100k")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="served partitions to measure at")
    parser.add_argument("--records", type=int, default=3, help="records per partition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def rows(partitions: range, records: int, edition: str = "") -> Iterator[Row]:
    for p in partitions:
        for i in range(records):
            record = {"ident": f"X{p:06d}{i}", "name": f"Field {p} strip {i} {edition}".strip(),
                      "municipality": f"Town {p % 997}", "iso_country": f"C{p % 235}", "elevation_ft": str(i * 7)}
            as_json = _JSON.encode(record).decode()
            name, body = split_text(record, NAME_FIELDS)
            yield ("airports", f"p{p:06d}", i + 2, as_json, 0, 0, record_digest(i + 2, as_json, 0, 0), name, body)


def index_file(path: Path, partitions: range, records: int, edition: str = "") -> Path:
    build_index(path, rows(partitions, records, edition), [f"airports/p{p:06d}" for p in partitions], NAME_FIELDS)
    return path


def timed_switch(root: Path, index: Path, run_id: str, seq: int) -> tuple[float, Any]:
    started = time.perf_counter()
    conn = open_writer(root)
    try:
        done = switch(conn, index, run_id=run_id, run_seq=seq, index_sha256=run_id)
    finally:
        conn.close()
    return time.perf_counter() - started, done


def measure(tmp: Path, size: int, records: int, repeats: int) -> dict[str, Any]:
    full = index_file(tmp / f"full-{size}.db", range(size), records)
    edits = [index_file(tmp / f"one-{size}-{e}.db", range(1), records, e) for e in ("A", "B")]
    root = tmp / f"served-{size}"
    rebuild_s, done = timed_switch(root, full, "full", 1)
    assert done.replaced == size and done.records == size * records
    best = float("inf")
    for repeat in range(repeats):
        seconds, done = timed_switch(root, edits[repeat % 2], f"run-{repeat}", 2 + repeat)
        assert (done.replaced, done.records) == (1, records)
        best = min(best, seconds)
    return {"partitions": size, "records": size * records, "full_rebuild_s": round(rebuild_s, 4),
            "switch_one_changed_s": round(best, 5), "ratio_switch_to_rebuild": round(best / rebuild_s, 6),
            "served_db_bytes": served_path(root).stat().st_size}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 100_000])
    with tempfile.TemporaryDirectory(prefix="sb-bench-serve-") as tmp:
        results = [measure(Path(tmp), size, args.records, args.repeats) for size in sizes]
    figures = {"records_per_partition": args.records, "repeats": args.repeats, "sizes": results}
    print_table(f"serve switch, one partition changed, vs a full rebuild of the served view; best of {args.repeats}",
                ["served partitions", "records", "full rebuild s", "switch s", "switch / rebuild"],
                [[f"{r['partitions']:,}", f"{r['records']:,}", f"{r['full_rebuild_s']:.3f}",
                  f"{r['switch_one_changed_s']:.4f}", f"{r['ratio_switch_to_rebuild']:.5f}"] for r in results])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
