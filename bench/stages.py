"""The reference pipeline on the demo corpus (stdlib docstrings): records/s per stage.

A fresh home in a temp directory; the corpus written by ``write_demo_corpus`` (32 partitions,
8 in ``--quick``); one run published with the :class:`~stagebus.producer.Producer` and run by
``EmbeddedRunner`` (SQLite log, 2 worker threads), as ``stagebus demo`` does. Per stage, from
the manifests of that run: records in, summed ``duration_s`` (the stage body plus publishing its
artifacts, as the executor times it), records/s = records_in / duration_s, and the stage's
share of the run's wall time.

Baseline: reading every partition file and decoding each JSON line (msgspec), the least any
stage that touches every record must do; ratio = stage records/s / baseline records/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec

from bench import print_table
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.pipeline.registry import load_pipelines
from stagebus.producer import Producer
from stagebus.projections.reader import Projections
from stagebus.stages import reference_pipeline
from stagebus.stages.demo_data import DEMO_DATASET, write_demo_corpus
from stagebus.store import SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-stages.json"
WORKERS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the 8 largest partitions instead of 32")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def decode_rate(files: list[Path]) -> tuple[int, float]:
    """(records, records/s) of reading and decoding every line of ``files``: the baseline."""
    decoder = msgspec.json.Decoder()
    best, records = 0.0, 0
    for _ in range(3):
        started = time.perf_counter()
        records = 0
        for path in files:
            for line in path.read_bytes().splitlines():
                decoder.decode(line)
                records += 1
        best = max(best, records / (time.perf_counter() - started))
    return records, best


def run_reference(home: Path, partitions: int) -> tuple[list[Path], Any, float, str]:
    files = write_demo_corpus(home / "demo-data", limit_partitions=partitions)
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    started = time.perf_counter()
    producer = Producer(store, reference_pipeline.name, reference_pipeline.plan(), reference_pipeline.version,
                        projections=projections)
    run_id = producer.open_run()
    for path in files:
        producer.publish(DEMO_DATASET, path.stem, path, {"source": "python-stdlib-docstrings"}, run_id=run_id)
    producer.seal(run_id)
    with EmbeddedRunner(store, projections, home / "artifacts", load_pipelines(), workers=WORKERS) as runner:
        report = runner.run([run_id])
    wall = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"reference run failed: {report.failed[:3]}")
    projections.catch_up()
    manifests = projections.manifests(run_id)
    projections.close()
    store.close()
    return files, manifests, wall, run_id


def run(args: argparse.Namespace) -> dict[str, Any]:
    partitions = 8 if args.quick else 32
    with tempfile.TemporaryDirectory(prefix="sb-bench-stages-") as tmp:
        files, manifests, wall, _ = run_reference(Path(tmp), partitions)
        records, baseline = decode_rate(files)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for manifest in manifests:
        stage = totals[manifest.stage]
        stage["tasks"] += 1
        stage["records_in"] += manifest.metrics.records_in
        stage["records_out"] += manifest.metrics.records_out
        stage["rejected"] += manifest.metrics.records_rejected
        stage["duration_s"] += manifest.metrics.duration_s
    order = [d.name for d in reference_pipeline.stages]
    rows = []
    for name in order:
        t = totals[name]
        rate = t["records_in"] / t["duration_s"] if t["duration_s"] else 0.0
        rows.append({"stage": name, "tasks": int(t["tasks"]), "records_in": int(t["records_in"]),
                     "records_out": int(t["records_out"]), "rejected": int(t["rejected"]),
                     "duration_s": round(t["duration_s"], 3), "records_per_s": round(rate),
                     "ratio_to_decode": round(rate / baseline, 4)})
    figures = {"partitions": len(files), "input_records": records, "workers": WORKERS, "wall_s": round(wall, 2),
               "baseline_decode_records_per_s": round(baseline), "stages": rows}
    print_table(f"reference pipeline on the demo corpus: {len(files)} partitions, {records:,} records, "
                f"{wall:.1f} s wall ({WORKERS} worker threads); baseline: read + decode {baseline:,.0f} records/s",
                ["stage", "tasks", "records in", "stage seconds", "records/s", "/ decode"],
                [[r["stage"], r["tasks"], f"{r['records_in']:,}", f"{r['duration_s']:.2f}",
                  f"{r['records_per_s']:,}", f"{r['ratio_to_decode']:.3f}"] for r in rows])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
