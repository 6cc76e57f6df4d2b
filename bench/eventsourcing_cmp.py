"""Event log vs the ``eventsourcing`` library's SQLite recorder: the same appends and reads.

Both sides get the same events (``bench.store.workload``: alternating StageStarted and keyed
ManifestWritten). Ours: ``SqliteEventStore.append_one`` / ``append(batch)`` (encode, sha256
chain, key check, timestamp) and ``read()`` + typed decode. Theirs, in the peer virtualenv
(see :mod:`bench.peer_venv`): ``SQLiteApplicationRecorder.insert_events`` of the encoded
payloads, one aggregate per stage task, and ``select_notifications`` + its JSON decode (see
``bench/peers_env/eventsourcing_log.py``). Rounds alternate ours and theirs; best of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import best_rate, peer_venv, print_table
from bench.store import replay, workload
from stagebus.events import Event, encode
from stagebus.store import EventStore, SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-eventsourcing.json"
MEASURES = ("append x1", "append x100", "append x1000", "replay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="20k events, 2 rounds; only if the peer venv exists (creating it takes ~40 s)")
    parser.add_argument("--events", type=int, default=None, help="events per run (default 20k quick, 100k full)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def ours_rates(directory: Path, events: list[Event], single_count: int, round_: int) -> dict[str, float]:
    made = iter(range(1_000_000))

    def fresh() -> EventStore:
        return SqliteEventStore(directory / f"ours-{round_}-{next(made)}.db")

    def singles(store: EventStore) -> None:
        for event in events[:single_count]:
            store.append_one(event)

    rates = {"append x1": best_rate(single_count, fresh, singles)}
    for size in (100, 1000):
        def batches(store: EventStore, size: int = size) -> None:
            for start in range(0, len(events), size):
                store.append(events[start : start + size])

        rates[f"append x{size}"] = best_rate(len(events), fresh, batches)
    full = fresh()
    full.append(events)
    rates["replay"] = best_rate(len(events), lambda: full, replay)
    full.close()
    return rates


def run(args: argparse.Namespace) -> dict[str, Any]:
    count = args.events or (20_000 if args.quick else 100_000)
    single_count = min(count, 2_000 if args.quick else 10_000)
    rounds = 2 if args.quick else 3
    figures: dict[str, Any] = {"events": count, "single_events": single_count, "rounds": rounds}
    skipped = peer_venv.unavailable(args.quick, "eventsourcing", "eventsourcing")
    if skipped is not None:
        return peer_venv.record_skip(figures, skipped, args.json)
    events = workload(count, run="es")
    ours: dict[str, float] = dict.fromkeys(MEASURES, 0.0)
    theirs: dict[str, float] = dict.fromkeys(MEASURES, 0.0)
    with tempfile.TemporaryDirectory(prefix="sb-bench-es-") as tmp:
        payloads = Path(tmp) / "payloads.ndjson"
        payloads.write_bytes(b"\n".join(encode(e) for e in events) + b"\n")
        for round_ in range(rounds):
            for name, rate in ours_rates(Path(tmp), events, single_count, round_).items():
                ours[name] = max(ours[name], rate)
            peer = peer_venv.run_script("eventsourcing_log.py", str(payloads), str(single_count), "1")
            for name, rate in peer["per_s"].items():
                theirs[name] = max(theirs[name], rate)
    figures["eventsourcing_version"] = peer["version"]
    figures["rows"] = [{"measure": m, "ours_per_s": round(ours[m]), "eventsourcing_per_s": round(theirs[m]),
                        "ratio": round(ours[m] / theirs[m], 3)} for m in MEASURES]
    print_table(f"event log vs eventsourcing {peer['version']} SQLite recorder ({count:,} events; "
                f"x1: {single_count:,}; events/s, best of {rounds}; ratio = ours / theirs)",
                ["measure", "unit", "stagebus", "eventsourcing", "ratio"],
                [[r["measure"], "events/s", f"{r['ours_per_s']:,}", f"{r['eventsourcing_per_s']:,}",
                  f"{r['ratio']:.2f}"] for r in figures["rows"]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
