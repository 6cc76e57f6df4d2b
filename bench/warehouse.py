"""Warehouse loads: rows/s of ``stagebus.warehouse.load`` into PostgreSQL vs a raw psycopg COPY.

A home in a temp directory gets ``--rows`` records (default 200,000) in ``--partitions``
partitions (default 4) of one run, made by a one-stage synthetic pipeline run embedded
(``{"n": int, "name": str, "score": float}``). Then, in a database of the run's own on the
PostgreSQL at ``--dsn`` (default ``$STAGEBUS_BENCH_POSTGRES`` or postgres on 127.0.0.1):

- **ours**: ``load()`` of the dataset into a new table, timed end to end: the snapshot, the
  column inference pass, sha256-verified reads of the artifacts, one transaction per partition
  (tracking row locked, ``DELETE``, ``COPY``, tracking row updated).
- **raw**: the same rows, already in memory as tuples, ``COPY``'d by psycopg into a plain table
  in one transaction (the floor: only the database's own work and psycopg's row formatting).

Rounds alternate ours / raw, each into a fresh table; best of ``--repeats``.
ratio = ours / raw rows/s. For context, each round also times ``stagebus.read`` of the same
records alone (verified read + decode, no database): the load reads them twice, once to infer
the columns and once to copy them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench import print_table
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-warehouse.json"
DEFAULT_DSN = os.environ.get("STAGEBUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DATASET, OUTPUT = "synthetic", "rows.rows"


class Row(BaseModel):
    n: int
    name: str
    score: float


@stage("rows", outputs={"rows": Row})
def rows(ctx: StageContext) -> None:
    """Emits the ``count`` rows its source file (``{"count", "offset"}``) asks for."""
    spec = json.loads(ctx.source_path().read_text())
    ctx.count_in(spec["count"])
    for n in range(spec["offset"], spec["offset"] + spec["count"]):
        ctx.emit("rows", {"n": n, "name": f"row {n} of the synthetic dataset", "score": n / 7})


def synthetic_pipeline() -> Pipeline:
    return Pipeline("warehouse-bench", [rows], version="1")


def make_home(home: Path, total_rows: int, partitions: int = 1, run_id: str = "r1") -> None:
    """A home whose dataset ``synthetic`` has ``total_rows`` valid rows in ``partitions``
    partitions ``p0``, ``p1``, … (output ``rows.rows``)."""
    home.mkdir(parents=True, exist_ok=True)
    pipeline = synthetic_pipeline()
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    try:
        store.append_one(RunOpened(run_id=run_id, pipeline=pipeline.name, pipeline_version=pipeline.version,
                                   plan=pipeline.plan()))
        refs, offset = [], 0
        for index in range(partitions):
            count = total_rows // partitions + (1 if index < total_rows % partitions else 0)
            path = home / f"source-{run_id}-p{index}.json"
            path.write_text(json.dumps({"count": count, "offset": offset}))
            offset += count
            data = path.read_bytes()
            store.append_one(PartitionIngested(run_id=run_id, dataset=DATASET, partition=f"p{index}",
                                               uri=path.as_uri(), content_hash=hashlib.sha256(data).hexdigest(),
                                               size=len(data)))
            refs.append(f"{DATASET}/p{index}")
        store.append_one(RunSealed(run_id=run_id, partitions=tuple(refs)))
        with EmbeddedRunner(store, projections, home / "artifacts", PipelineRegistry([pipeline]), workers=2) as run:
            if not run.run().ok:
                raise RuntimeError("the synthetic pipeline failed")
    finally:
        projections.close()
        store.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 round")
    parser.add_argument("--rows", type=int, default=None, help="rows to load (default 200,000; quick 20,000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions the rows are spread over")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per side (default 3; quick 1)")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="a PostgreSQL database to create the bench's own in")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from stagebus.consumer import read
    from stagebus.warehouse import load

    total = args.rows or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (1 if args.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-warehouse-"))
    database = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{database}"
    try:
        make_home(tmp / "home", total, args.partitions)
        with read(DATASET, output=OUTPUT, home=tmp / "home") as snapshot:
            raw_rows = [(row["n"], row["name"], row["score"]) for row in snapshot]
        assert len(raw_rows) == total
        ours_rates, raw_rates, read_rates = [], [], []
        for round_ in range(repeats):
            started = time.perf_counter()
            with read(DATASET, output=OUTPUT, home=tmp / "home") as snapshot:
                read_count = sum(1 for _ in snapshot)
            read_rates.append(read_count / (time.perf_counter() - started))
            started = time.perf_counter()
            result = load(DATASET, dsn, f"ours_{round_}", output=OUTPUT, home=tmp / "home")
            ours_rates.append(total / (time.perf_counter() - started))
            assert result.rows_loaded == total
            with psycopg.connect(dsn) as conn:  # what was timed is what is in the table
                stored = conn.execute(f"SELECT count(*), sum(n) FROM ours_{round_}").fetchone()  # type: ignore[arg-type]
            assert stored == (total, sum(r[0] for r in raw_rows)), stored
            raw_rates.append(_raw_copy(dsn, f"raw_{round_}", raw_rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]
    ours, raw, reading = max(ours_rates), max(raw_rates), max(read_rates)
    figures = {"rows": total, "partitions": args.partitions, "repeats": repeats,
               "ours_rows_per_s": round(ours), "raw_copy_rows_per_s": round(raw),
               "ratio_ours_to_raw": round(ours / raw, 3), "verified_read_rows_per_s": round(reading)}
    print_table(f"PostgreSQL load of {total:,} rows in {args.partitions} partitions, best of {repeats}",
                ["path", "rows/s", "/ raw"],
                [["stagebus load (snapshot, infer, verify, per-partition transaction, COPY)", f"{ours:,.0f}",
                  f"{ours / raw:.3f}"],
                 ["raw psycopg COPY of the same rows from memory, one transaction", f"{raw:,.0f}", "1.000"],
                 ["(context) stagebus.read of the same records: verified read + decode only", f"{reading:,.0f}",
                  f"{reading / raw:.3f}"]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _raw_copy(dsn: str, table: str, rows: list[tuple[Any, ...]]) -> float:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (n bigint, name text, score double precision)")  # type: ignore[arg-type]
        conn.commit()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY {table} (n, name, score) FROM STDIN") as copy:  # type: ignore[arg-type]
            for row in rows:
                copy.write_row(row)
        return len(rows) / (time.perf_counter() - started)
