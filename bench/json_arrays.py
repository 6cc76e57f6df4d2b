"""Cost of streaming a ``.json`` array partition element by element (ingest's JSON-array reader).

One file of ``--records`` objects (200,000 by default, 20,000 in ``--quick``; ~190 bytes each, like
an airports table's rows) written twice in a temp directory: as a JSON array and as JSON lines.

Ours: :func:`stagebus.stages.json_arrays.parse_json` over the array file (bounded memory: it holds
one block and one element). Baselines, in the same run, runs alternating, best of ``--repeats``:
``msgspec.json.decode`` of the whole array file at once (the fastest way, memory grows with the
file), and ingest's JSON-lines reader (``parse_jsonl``) over the same records as lines. Peak
memory (tracemalloc, in separate untimed passes) is reported for ours and the whole-file decode.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from bench import print_table
from stagebus.stages.json_arrays import parse_json
from stagebus.stages.parsing import parse_jsonl

DEFAULT_JSON = Path(__file__).parent / "results-json_arrays.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="20,000 records instead of 200,000")
    parser.add_argument("--records", type=int, default=None, help="objects in the array")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def records(n: int) -> list[dict[str, Any]]:
    return [{"ident": f"K{i:05d}", "name": f"Airport number {i}, \"quoted\"", "type": "small_airport",
             "latitude": 37.0 + i % 100 / 7, "longitude": -122.25, "iso_country": "US",
             "municipality": "Somewhere, CA", "codes": ["SFO", i % 7]} for i in range(n)]


def write_files(root: Path, n: int) -> tuple[Path, Path]:
    rows = records(n)
    array, lines = root / "rows.json", root / "rows.jsonl"
    array.write_text(json.dumps(rows, indent=1))
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return array, lines


def streamed(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for row in parse_json(fh) if row.record is not None)


def whole_file(path: Path) -> int:
    return len(msgspec.json.decode(path.read_bytes()))


def jsonl(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for row in parse_jsonl(fh) if row.record is not None)


def timed(work: Callable[[Path], int], path: Path, expected: int) -> float:
    started = time.perf_counter()
    count = work(path)
    seconds = time.perf_counter() - started
    assert count == expected, (work.__name__, count, expected)
    return seconds


def peak_bytes(work: Callable[[Path], int], path: Path) -> int:
    tracemalloc.start()
    try:
        work(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.records or (20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory(prefix="sb-bench-json-") as tmp:
        array, lines = write_files(Path(tmp), n)
        best = {"streamed": float("inf"), "whole_file": float("inf"), "jsonl": float("inf")}
        for _ in range(args.repeats):
            best["streamed"] = min(best["streamed"], timed(streamed, array, n))
            best["whole_file"] = min(best["whole_file"], timed(whole_file, array, n))
            best["jsonl"] = min(best["jsonl"], timed(jsonl, lines, n))
        memory = {"streamed": peak_bytes(streamed, array), "whole_file": peak_bytes(whole_file, array)}
        size = array.stat().st_size
    figures = {
        "records": n, "bytes": size, "repeats": args.repeats,
        **{f"{k}_s": round(v, 4) for k, v in best.items()},
        "streamed_records_per_s": round(n / best["streamed"]),
        "ratio_streamed_to_whole_file_decode": round(best["streamed"] / best["whole_file"], 3),
        "ratio_streamed_to_jsonl": round(best["streamed"] / best["jsonl"], 3),
        "peak_bytes_streamed": memory["streamed"], "peak_bytes_whole_file": memory["whole_file"],
        "ratio_peak_memory_streamed_to_whole_file": round(memory["streamed"] / memory["whole_file"], 4),
    }
    print_table(f"reading a .json array of {n:,} objects, {size / 1e6:.1f} MB; best of {args.repeats}",
                ["reader", "seconds", "records/s", "time / whole-file decode", "peak memory MB"],
                [["parse_json (streamed, per element)", f"{best['streamed']:.3f}", f"{n / best['streamed']:,.0f}",
                  f"{figures['ratio_streamed_to_whole_file_decode']:.2f}", f"{memory['streamed'] / 1e6:.1f}"],
                 ["msgspec.json.decode(whole file)", f"{best['whole_file']:.3f}", f"{n / best['whole_file']:,.0f}",
                  "1.00", f"{memory['whole_file'] / 1e6:.1f}"],
                 ["parse_jsonl (same records as lines)", f"{best['jsonl']:.3f}", f"{n / best['jsonl']:,.0f}",
                  f"{best['jsonl'] / best['whole_file']:.2f}", ""]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
