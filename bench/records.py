"""Records per second on airports-like data: each reference stage, a user stage's record path,
``stagebus run`` end to end (many small files; one large file, with its peak memory), and
``--processes 1`` against ``--processes 2``.

Data: :func:`bench.airports_data.write_airports` (the 18 columns of the OurAirports table,
deterministic values). Every figure is a ratio against a raw baseline measured in the same run:

- **per stage** (records in / the stage's ``duration_s`` from its manifests, one process, one
  worker thread so a stage's time is its own): baseline = reading ingest's records artifact and
  decoding each line with msgspec, the least a stage that touches every record must do.
- **user stage** (``ctx.read`` of ingest's records, ``ctx.emit`` into a declared pydantic schema,
  the artifact published): baseline = read + decode + encode + write the same JSON lines.
- **end to end** (``stagebus publish --dir`` then ``stagebus run`` as subprocesses, wall time,
  peak RSS of the run): baseline = a plain script that reads every CSV with ``csv.reader`` and
  writes JSON lines with msgspec.
- **processes**: ``stagebus run --processes 1`` vs ``--processes 2`` on the same files; the ratio
  is time(1) / time(2) for the whole run, and for ``--stages ingest,normalize,extract`` alone (the
  CPU-bound partition stages, the ones sharded), best of two alternating rounds.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict

from bench import print_table
from bench.airports_data import write_airports
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.producer import Producer
from stagebus.projections.reader import Projections
from stagebus.stages import reference_pipeline
from stagebus.stages.ingest import ingest
from stagebus.store import SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-records.json"
STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]
PEAK = ("import atexit, sys\n"
        "def _peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'): print('peak_kb', line.split()[1], file=sys.stderr)\n"
        "atexit.register(_peak)\n"
        "from stagebus.cli import main; main()\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (~1 min)")
    parser.add_argument("--large-rows", type=int, default=None, help="rows of the one large file (default 1M)")
    parser.add_argument("--skip-processes", action="store_true", help="leave out --processes 1 vs 2")
    parser.add_argument("--tiny", action="store_true", help="a few hundred rows: the benchmark's code only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


# --- per stage ----------------------------------------------------------------------------


class Airport(BaseModel):
    """A user's record schema: plain fields, as most are."""

    model_config = ConfigDict(extra="forbid")
    index: int
    ident: str
    name: str
    latitude_deg: float
    longitude_deg: float
    iso_country: str
    municipality: str | None = None


@stage("to_airports", after=["ingest"], reads=["ingest.records"], outputs={"airports": Airport})
def to_airports(ctx: StageContext) -> None:
    for row in ctx.read("ingest", "records"):
        r = row["record"]
        ctx.emit("airports", {"index": row["index"], "ident": r["ident"], "name": r["name"],
                              "latitude_deg": float(r["latitude_deg"]), "longitude_deg": float(r["longitude_deg"]),
                              "iso_country": r["iso_country"], "municipality": r["municipality"] or None})


USER_PIPELINE = Pipeline("user_records", [ingest, to_airports])


def run_pipeline(home: Path, files: list[Path], pipeline: Pipeline) -> tuple[dict[str, list[float]], Path]:
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    producer = Producer(store, pipeline.name, pipeline.plan(), pipeline.version, projections=projections)
    run_id = producer.open_run()
    for path in files:
        producer.publish("airports", path.stem, path, {}, run_id=run_id)
    producer.seal(run_id)
    with EmbeddedRunner(store, projections, home / "artifacts", PipelineRegistry([pipeline]), workers=1) as runner:
        report = runner.run([run_id])
    if not report.ok:
        raise RuntimeError(f"{pipeline.name} failed: {report.failed[:2]}")
    projections.catch_up()
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    records_artifacts = []
    for m in projections.manifests(run_id):
        totals[m.stage][0] += m.metrics.records_in
        totals[m.stage][1] += m.metrics.duration_s
        if m.stage == "ingest":
            records_artifacts += [home / "artifacts" / a.path for a in m.artifacts if a.name == "records"]
    projections.close()
    store.close()
    return dict(totals), records_artifacts[0]


def read_decode_rate(path: Path, repeats: int = 3) -> float:
    decoder = msgspec.json.Decoder()
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        with path.open("rb") as fh:
            n = sum(1 for line in fh if decoder.decode(line) is not None)
        best = max(best, n / (time.perf_counter() - started))
    return best


def read_write_rate(path: Path, out: Path, repeats: int = 3) -> float:
    decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        n = 0
        with path.open("rb") as fh, out.open("wb") as dst:
            for line in fh:
                dst.write(encoder.encode(decoder.decode(line)) + b"\n")
                n += 1
        best = max(best, n / (time.perf_counter() - started))
    return best


# --- end to end -----------------------------------------------------------------------------


def cli_run(home: Path, data: Path, *run_args: str) -> dict[str, Any]:
    subprocess.run([*STAGEBUS, "--home", str(home), "publish", "--dataset", "airports", "--dir", str(data), "--seal"],
                   check=True, capture_output=True, timeout=3600)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, "--home", str(home), "run", *run_args],
                          capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"stagebus run failed: {done.stderr[-2000:]}")
    peak = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak_kb")), 0)
    runs = json.loads(subprocess.run([*STAGEBUS, "--home", str(home), "runs", "--format", "json"], check=True,
                                     capture_output=True, text=True).stdout)
    shown = json.loads(subprocess.run([*STAGEBUS, "--home", str(home), "runs", "show", runs[0]["run_id"],
                                       "--format", "json"], check=True, capture_output=True, text=True).stdout)
    return {"seconds": seconds, "peak_rss_mb": round(peak / 1024, 1), "stages": shown.get("stages", shown)}


def plain_script_rate(files: list[Path], out: Path) -> float:
    """A plain script's records/s: csv.reader over every file, each row written as a JSON line."""
    encoder = msgspec.json.Encoder()
    started = time.perf_counter()
    n = 0
    with out.open("wb") as dst:
        for path in files:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = csv.reader(fh)
                header = next(rows)
                for row in rows:
                    dst.write(encoder.encode(dict(zip(header, row, strict=True))) + b"\n")
                    n += 1
    return n / (time.perf_counter() - started)


CPU_STAGES = "ingest,normalize,extract"


def partition_seconds(stages: Any) -> float:
    """Summed duration_s of the partition stages from ``runs show --format json``."""
    rows = stages if isinstance(stages, list) else []
    return sum(float(r.get("duration_s") or 0) for r in rows if r.get("stage") in ("ingest", "normalize", "extract"))


# --- the benchmark -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    stage_rows, stage_files = (20_000, 2) if quick else (200_000, 8)
    small_rows, small_files = (5_000, 40) if quick else (28_000, 235)
    large_rows = args.large_rows or (50_000 if quick else 1_000_000)
    if args.tiny:
        stage_rows, stage_files, small_rows, small_files, large_rows = 400, 2, 200, 5, 300
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sb-bench-records-") as tmp:
        root = Path(tmp)
        files = write_airports(root / "stage-data", stage_rows, stage_files)
        totals, records = run_pipeline(root / "ref", files, reference_pipeline)
        baseline = read_decode_rate(records)
        stages = []
        for d in reference_pipeline.stages:
            n, seconds = totals.get(d.name, [0, 0.0])
            rate = n / seconds if seconds else 0.0
            stages.append({"stage": d.name, "records_in": int(n), "seconds": round(seconds, 3),
                           "records_per_s": round(rate), "ratio": round(rate / baseline, 3)})
        figures["stages"] = {"rows": stage_rows, "files": stage_files, "baseline_read_decode_per_s": round(baseline),
                             "stages": stages}
        user, _ = run_pipeline(root / "user", files, USER_PIPELINE)
        n, seconds = user["to_airports"]
        raw = read_write_rate(records, root / "raw-out.jsonl")
        figures["user_stage"] = {"records": int(n), "records_per_s": round(n / seconds),
                                 "baseline_read_write_per_s": round(raw), "ratio": round(n / seconds / raw, 3)}

        small = write_airports(root / "small", small_rows, small_files)
        ours = cli_run(root / "home-small", root / "small")
        plain = plain_script_rate(small, root / "plain.jsonl")
        rows_small = small_rows
        figures["many_small_files"] = {"files": len(small), "rows": rows_small, **ours,
                                       "records_per_s": round(rows_small / ours["seconds"]),
                                       "plain_script_per_s": round(plain),
                                       "ratio": round(rows_small / ours["seconds"] / plain, 4)}
        large = write_airports(root / "large", large_rows, 1)
        ours = cli_run(root / "home-large", root / "large")
        plain = plain_script_rate(large, root / "plain.jsonl")
        figures["one_large_file"] = {"rows": large_rows, "bytes": large[0].stat().st_size, **ours,
                                     "records_per_s": round(large_rows / ours["seconds"]),
                                     "plain_script_per_s": round(plain),
                                     "ratio": round(large_rows / ours["seconds"] / plain, 4)}

        proc_files = root / "stage-data"
        if args.skip_processes:
            show(figures)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return figures
        one = cli_run(root / "home-p1", proc_files, "--processes", "1")
        two = cli_run(root / "home-p2", proc_files, "--processes", "2")
        # The CPU-bound stages alone (the partition stages, which --processes shards), rounds
        # alternating: the whole run also holds the run-level stages, which stay in one process.
        best = {"1": float("inf"), "2": float("inf")}
        for round_ in range(2):
            for n in best:
                run = cli_run(root / f"home-cpu{n}-{round_}", proc_files, "--stages", CPU_STAGES, "--processes", n)
                best[n] = min(best[n], run["seconds"])
        cpu_one, cpu_two = best["1"], best["2"]
        figures["processes"] = {
            "files": stage_files, "rows": stage_rows,
            "one_s": round(one["seconds"], 2), "two_s": round(two["seconds"], 2),
            "speedup_run": round(one["seconds"] / two["seconds"], 2),
            "one_partition_stage_s": round(partition_seconds(one["stages"]), 2),
            "two_partition_stage_s": round(partition_seconds(two["stages"]), 2),
            "cpu_stages_one_s": round(cpu_one, 2), "cpu_stages_two_s": round(cpu_two, 2),
            "speedup_cpu_stages": round(cpu_one / cpu_two, 2),
        }
    show(figures)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def show(f: dict[str, Any]) -> None:
    s = f["stages"]
    print_table(f"reference stages, {s['rows']:,} airports rows in {s['files']} files, 1 worker thread; "
                f"baseline: read + decode {s['baseline_read_decode_per_s']:,} records/s",
                ["stage", "records in", "seconds", "records/s", "/ baseline"],
                [[r["stage"], f"{r['records_in']:,}", r["seconds"], f"{r['records_per_s']:,}", r["ratio"]]
                 for r in s["stages"]])
    u, m, big = f["user_stage"], f["many_small_files"], f["one_large_file"]
    p = f.get("processes", {"files": "-", "two_s": "-", "one_s": "-", "speedup_run": "-", "cpu_stages_two_s": "-",
                            "cpu_stages_one_s": "-", "speedup_cpu_stages": "-"})
    print_table("record path and end to end", ["measure", "ours", "baseline", "ratio", "peak RSS MB"], [
        ["user stage (read -> emit pydantic schema)", f"{u['records_per_s']:,}/s",
         f"read+write {u['baseline_read_write_per_s']:,}/s", u["ratio"], ""],
        [f"stagebus run, {m['files']} files / {m['rows']:,} rows", f"{m['records_per_s']:,}/s",
         f"plain script {m['plain_script_per_s']:,}/s", m["ratio"], m["peak_rss_mb"]],
        [f"stagebus run, 1 file / {big['rows']:,} rows", f"{big['records_per_s']:,}/s",
         f"plain script {big['plain_script_per_s']:,}/s", big["ratio"], big["peak_rss_mb"]],
        [f"--processes 2 vs 1 ({p['files']} files)", f"{p['two_s']} s", f"{p['one_s']} s",
         f"{p['speedup_run']}x", ""],
        [f"--processes 2 vs 1, {CPU_STAGES} only", f"{p['cpu_stages_two_s']} s", f"{p['cpu_stages_one_s']} s",
         f"{p['speedup_cpu_stages']}x", ""],
    ])
