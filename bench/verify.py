"""Cost of verifying artifacts as they are read: ``ctx.read`` of a large upstream JSONL output.

A fresh artifact store in a temp directory holds one upstream output of ``--records`` records
(200,000 by default, 20,000 in ``--quick``; each ~120 bytes, like normalize's records). ``ctx.read``
of it through a real :class:`~stagebus.pipeline.context.StageContext` hashes every block as it
reads and checks the sha256 at the end of the file.

Baseline, in the same run: the same read without verification (a generator that opens the
object, iterates its lines, counts and decodes each with msgspec: ``ctx.read`` before verification).
ratio = verified time / unverified time; the target is <= 1.10. Runs alternate, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel

from bench import print_table
from stagebus.artifacts.local import ArtifactStore, sha256_file
from stagebus.events import Manifest
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage

DEFAULT_JSON = Path(__file__).parent / "results-verify.json"
TARGET_RATIO = 1.10


class Row(BaseModel):
    index: int
    record: dict[str, Any]


@stage("consume", after=["produce"], outputs={"out": Row})
def consume(ctx: StageContext) -> None:  # the contract the reading context is built for
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="20,000 records instead of 200,000")
    parser.add_argument("--records", type=int, default=None, help="records in the upstream output")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def write_upstream(artifacts: ArtifactStore, records: int) -> Manifest:
    pending = artifacts.pending("records")
    encoder = msgspec.json.Encoder(order="deterministic")
    for i in range(records):
        pending.write(encoder.encode({"index": i + 1, "record": {
            "id": f"r{i}", "title": f"record number {i}", "value": i * 7 % 1000, "tags": ["a", "b"]}}) + b"\n")
        pending.records += 1
    artifact = pending.publish()
    return Manifest(stage="produce", run_id="bench", partition="d/p", input_hash="", output_hash="",
                    config_hash="", status="complete", started_at="", ended_at="", artifacts=(artifact,))


def verified_read(artifacts: ArtifactStore, upstream: Manifest) -> Callable[[], int]:
    def work() -> int:
        ctx = StageContext(contract=consume.contract, config=consume.contract.config(), run_id="bench",
                           partition="d/p", attempt=1, artifacts=artifacts,
                           upstream={("produce", "d/p"): upstream}, ingested={}, partitions=("d/p",))
        count = sum(1 for _ in ctx.read("produce", "records"))
        ctx.discard()
        return count
    return work


def unverified_read(path: Path) -> Callable[[], int]:
    """What ``ctx.read`` did before verification: a generator over the file's lines, counting."""
    decoder = msgspec.json.Decoder(dict[str, Any])
    counter = {"records_in": 0}

    def read() -> Iterator[dict[str, Any]]:
        with path.open("rb") as fh:
            for line in fh:
                counter["records_in"] += 1
                yield decoder.decode(line)

    def work() -> int:
        return sum(1 for _ in read())
    return work


def timed(work: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    count = work()
    return time.perf_counter() - started, count


def run(args: argparse.Namespace) -> dict[str, Any]:
    records = args.records or (20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory(prefix="sb-bench-verify-") as tmp:
        artifacts = ArtifactStore(Path(tmp))
        upstream = write_upstream(artifacts, records)
        ours, raw = verified_read(artifacts, upstream), unverified_read(artifacts.path(upstream.artifacts[0]))
        best_ours = best_raw = best_hash = float("inf")
        object_path = artifacts.path(upstream.artifacts[0])
        for _ in range(args.repeats):
            seconds, count = timed(ours)
            assert count == records
            best_ours = min(best_ours, seconds)
            seconds, count = timed(raw)
            assert count == records
            best_raw = min(best_raw, seconds)
            started = time.perf_counter()
            sha256_file(object_path)  # the floor: what hashing alone costs
            best_hash = min(best_hash, time.perf_counter() - started)
        size = upstream.artifacts[0].bytes
    ratio = best_ours / best_raw
    figures = {"records": records, "bytes": size, "repeats": args.repeats,
               "verified_s": round(best_ours, 4), "unverified_s": round(best_raw, 4),
               "sha256_alone_s": round(best_hash, 4),
               "verified_records_per_s": round(records / best_ours),
               "unverified_records_per_s": round(records / best_raw),
               "ratio_verified_to_unverified": round(ratio, 4), "target_ratio": TARGET_RATIO,
               "within_target": ratio <= TARGET_RATIO}
    print_table(f"ctx.read of one upstream output: {records:,} records, {size / 1e6:.1f} MB; best of {args.repeats}",
                ["read", "seconds", "records/s", "/ unverified"],
                [["verified (sha256 while reading)", f"{best_ours:.3f}", f"{records / best_ours:,.0f}", f"{ratio:.3f}"],
                 ["unverified (plain lines + decode)", f"{best_raw:.3f}", f"{records / best_raw:,.0f}", "1.000"],
                 ["sha256 of the object alone", f"{best_hash:.3f}", "", f"{best_hash / best_raw:.3f}"]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
