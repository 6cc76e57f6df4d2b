"""The benchmarks' own code, at tiny sizes, so it cannot rot between full runs.

No timing is asserted and no peer virtualenv is built: each test runs the cheapest path of a
benchmark and checks that it produces figures of the right shape.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

from bench import eventsourcing_cmp, history, json_arrays, noop_run, scaling, serve, stages, verify
from bench.__main__ import BENCHMARKS
from bench.results import run_all
from bench.store import workload
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore


def test_every_benchmark_module_declares_its_options() -> None:
    for name, module_name in BENCHMARKS.items():
        # Given a registered benchmark / When its options are parsed with --quick
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        # Then it accepts the flag `python -m bench all --quick` passes to every benchmark
        assert parser.parse_args(["--quick"]).quick, name
        assert callable(module.run)


def test_durability_bench_measures_both_levels_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import durability

    parser = argparse.ArgumentParser()
    durability.add_arguments(parser)
    args = parser.parse_args(["--appends", "5", "--repeats", "1", "--dir", str(tmp_path),
                              "--json", str(tmp_path / "out.json")])
    report = durability.run(args)
    rows = report["appends_by_size"]
    assert [r["events_per_append"] for r in rows] == [1, 2]
    assert all(r["full_appends_per_s"] > 0 and r["normal_appends_per_s"] > 0 for r in rows)
    assert json.loads((tmp_path / "out.json").read_text()) == report
    assert list(tmp_path.iterdir()) == [tmp_path / "out.json"]  # the trial logs are removed


def test_noop_pipeline_runs_embedded(tmp_path: Path) -> None:
    # Given two partitions of the no-op pipeline / When run embedded / Then every stage task ran
    assert noop_run.embedded_run(tmp_path, 2) > 0


def test_noop_run_in_a_subprocess_reports_time_and_memory() -> None:
    result = noop_run.measure_in_subprocess(1, timeout_s=120)
    assert result["tasks"] == 6
    assert result["peak_rss_mb"] >= result["base_rss_mb"] > 0


def test_synthetic_history_makes_valid_ledger_rows(tmp_path: Path) -> None:
    # Given a log grown by the synthetic history
    store = SqliteEventStore(tmp_path / "log.db")
    appended = history.grow(store, 25, run_size=10, batch=40)
    # When the projections catch up
    with Projections(store, tmp_path / "projections") as projections:
        projections.catch_up()
        ledger = projections.ledger()
    store.close()
    # Then every partition is a valid row, ~7 events each
    assert len(ledger) == 25 and {row.status for row in ledger} == {"valid"}
    assert appended == 25 * history.EVENTS_PER_PARTITION + 3 * (2 + 2 * len(history.RUN_STAGES))


def test_inspect_and_replay_scaling_at_tiny_sizes(tmp_path: Path) -> None:
    inspect = scaling.inspect_scaling(tmp_path, [150, 200], repeats=1)
    assert [r["ledger_rows"] for r in inspect] == [150, 200]
    replay = scaling.replay_scaling(tmp_path, [100, 300])
    assert replay[0]["events"] >= 100 and replay[1]["events"] >= 300


def test_our_side_of_the_eventsourcing_comparison(tmp_path: Path) -> None:
    rates = eventsourcing_cmp.ours_rates(tmp_path, workload(200, run="smoke"), 20, 0)
    assert set(rates) == set(eventsourcing_cmp.MEASURES) and all(rate > 0 for rate in rates.values())


def test_reference_pipeline_on_one_demo_partition(tmp_path: Path) -> None:
    files, manifests, wall, _ = stages.run_reference(tmp_path, 1)
    assert len(files) == 1 and wall > 0
    assert {m.stage for m in manifests} == {"ingest", "normalize", "extract", "link", "index", "serve"}


def test_all_merges_figures_and_keeps_going_past_a_failure(tmp_path: Path) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("no redis")

    # Given one benchmark that works and one that fails
    merged = run_all({"ok": lambda: {"ratio": 1.0}, "broken": broken}, quick=True, path=tmp_path / "r.json")
    # Then both are in results.json: figures for one, the error for the other, and the machine
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["benchmarks"] == {"ok": {"ratio": 1.0}} and "broken" in written["errors"]
    assert written["machine"]["nproc"] >= 1 and merged["quick"] is True


def test_no_benchmark_name_runs_every_benchmark(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bench.__main__ as entry
    import bench.results

    chosen: list[list[str]] = []
    monkeypatch.setattr(bench.results, "run_all", lambda runs, quick: chosen.append(list(runs)) or {"errors": {}})
    # Given `python -m bench` with no name, and `python -m bench all --quick`
    assert entry.main([]) == 0 and entry.main(["all", "--quick"]) == 0
    # Then both run every registered benchmark
    assert chosen == [list(BENCHMARKS), list(BENCHMARKS)]


def test_verify_bench_reads_verified_and_unverified_at_a_tiny_size(tmp_path: Path) -> None:
    # Given a 500-record upstream output / When both reads are timed once
    args = argparse.Namespace(quick=True, records=500, repeats=1, json=tmp_path / "verify.json")
    figures = verify.run(args)
    # Then both read every record and the figures are written
    assert figures["records"] == 500 and figures["ratio_verified_to_unverified"] > 0
    assert json.loads((tmp_path / "verify.json").read_text())["bytes"] == figures["bytes"]


def test_json_arrays_bench_reads_every_record_at_a_tiny_size(tmp_path: Path) -> None:
    # Given 300 objects / When each reader is timed once
    args = argparse.Namespace(quick=True, records=300, repeats=1, json=tmp_path / "json_arrays.json")
    figures = json_arrays.run(args)
    # Then every reader read them all and the figures are written
    assert figures["records"] == 300 and figures["ratio_streamed_to_jsonl"] > 0
    assert json.loads((tmp_path / "json_arrays.json").read_text())["bytes"] == figures["bytes"]


def test_serve_bench_switches_one_partition_and_rebuilds_at_a_tiny_size(tmp_path: Path) -> None:
    # Given 20 served partitions / When one changed partition is switched in and the view rebuilt
    args = argparse.Namespace(quick=True, sizes=[20], records=2, repeats=2, json=tmp_path / "serve.json")
    figures = serve.run(args)
    # Then both were measured and the figures are written
    (size,) = figures["sizes"]
    assert size["partitions"] == 20 and size["records"] == 40 and size["ratio_switch_to_rebuild"] > 0
    assert json.loads((tmp_path / "serve.json").read_text())["sizes"] == figures["sizes"]


def test_why_bench_explains_partitions_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import why

    args = argparse.Namespace(quick=True, partitions=30, samples=5, repeats=1, json=tmp_path / "why.json")
    figures = why.run(args)
    assert figures["partitions"] == 30 and figures["samples"] == 5 and figures["facts"] >= 7
    assert figures["cli_ok"] and figures["ratio"] > 0
    assert json.loads((tmp_path / "why.json").read_text())["events"] == figures["events"]


def test_asof_bench_reads_the_ledger_as_of_positions_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import asof

    # Given a tiny synthetic log / When the as-of bench measures it
    figures = asof.measure(tmp_path, 500, repeats=1)
    # Then the head view has every ledger row and the figures carry a ratio against the raw scan
    assert figures["ledger_rows"] == 500 // history.EVENTS_PER_PARTITION
    assert figures["rows_as_of_middle"] <= figures["ledger_rows"]
    assert figures["ratio_head_vs_raw"] > 0


def test_records_bench_measures_every_figure_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import records

    parser = argparse.ArgumentParser()
    records.add_arguments(parser)
    figures = records.run(parser.parse_args(["--tiny", "--json", str(tmp_path / "records.json")]))
    # Then every stage of the reference pipeline has a rate and a ratio against read + decode
    assert [r["stage"] for r in figures["stages"]["stages"]][:3] == ["ingest", "normalize", "extract"]
    assert all(r["records_in"] > 0 and r["ratio"] > 0 for r in figures["stages"]["stages"][:3])
    assert figures["user_stage"]["records"] == 400 and figures["user_stage"]["ratio"] > 0
    # And the end-to-end runs and the processes comparison carry their baselines
    assert figures["many_small_files"]["files"] == 5 and figures["many_small_files"]["peak_rss_mb"] > 0
    assert figures["one_large_file"]["rows"] == 300 and figures["one_large_file"]["ratio"] > 0
    assert figures["processes"]["speedup_run"] > 0 and figures["processes"]["speedup_cpu_stages"] > 0
    assert json.loads((tmp_path / "records.json").read_text()) == figures


def test_idle_bench_times_an_idle_run_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import idle

    parser = argparse.ArgumentParser()
    idle.add_arguments(parser)
    figures = idle.run(parser.parse_args(["--tiny", "--json", str(tmp_path / "idle.json")]))
    assert figures["finished_runs"]["runs"] == 2 and figures["partitions"]["partitions"] == 200
    assert figures["partitions"]["cli_run_s"] > 0 and figures["finished_runs"]["run_in_process_s"] > 0


def test_ui_bench_times_every_inspector_page_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import ui

    # Given a 1,200-partition home (two runs, half reprocessed) / When the bench times its pages
    args = argparse.Namespace(quick=True, sizes="1200", repeats=1, keep=tmp_path / "homes", json=tmp_path / "ui.json")
    figures = ui.run(args)
    # Then every page answered (a non-200 fails the bench) and the figures have their shape
    (size,) = figures["sizes"]
    assert size["partitions"] == 1200 and size["events"] > 1200 * 7
    assert set(size["pages"]) == {"overview", "ledger", "ledger_status", "ledger_text", "ledger_newest",
                                  "partition", "run", "log", "log_type"}
    assert all(p["best_s"] > 0 for p in size["pages"].values())
    assert json.loads((tmp_path / "ui.json").read_text()) == figures


def test_relay_bench_drives_runs_at_tiny_sizes(tmp_path: Path) -> None:
    from bench import relay

    # Given runs of 20 and 60 partitions / When the relay drives each to its end
    args = argparse.Namespace(quick=False, sizes=[20, 60], chunk=7, before=None, before_max=0,
                              json=tmp_path / "relay.json")
    figures = relay.run(args)
    # Then every task of each run was routed, and both sides were measured
    assert [r["tasks"] for r in figures["sizes"]] == [63, 183]
    assert all(r["relay_us_per_task"] > 0 and r["raw_read_decode_us_per_task"] > 0 for r in figures["sizes"])
    assert json.loads((tmp_path / "relay.json").read_text()) == figures


def test_api_bench_measures_latency_and_both_throughputs_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import api

    parser = argparse.ArgumentParser()
    api.add_arguments(parser)
    args = parser.parse_args(["--batches", "2", "--records", "50", "--seconds", "0.5", "--repeats", "1",
                              "--json", str(tmp_path / "api.json")])
    figures = api.run(args)
    assert figures["submit_to_completed_p99_ms"] >= figures["submit_to_completed_p50_ms"] > 0
    assert figures["submits_per_s"] > 0 and figures["bare_submits_per_s"] > 0 and figures["ratio_ours_to_bare"] > 0
    assert json.loads((tmp_path / "api.json").read_text()) == figures


@pytest.mark.postgres
def test_warehouse_bench_loads_and_copies_a_tiny_dataset(tmp_path: Path) -> None:
    from bench import warehouse
    from support.warehouse import ADMIN_DSN, require_postgres

    # Given the machine's PostgreSQL / When the warehouse bench runs at 50 rows in 2 partitions
    require_postgres()
    parser = argparse.ArgumentParser()
    warehouse.add_arguments(parser)
    args = parser.parse_args(["--rows", "50", "--partitions", "2", "--repeats", "1", "--dsn", ADMIN_DSN,
                              "--json", str(tmp_path / "warehouse.json")])
    report = warehouse.run(args)
    # Then both sides report a rate and the figures are written as JSON
    assert report["rows"] == 50 and report["ours_rows_per_s"] > 0 and report["raw_copy_rows_per_s"] > 0
    assert json.loads((tmp_path / "warehouse.json").read_text()) == report


def test_artifacts_bench_writes_and_reads_both_backends_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import artifacts
    from support.s3 import require_moto

    require_moto()  # S3 is a moto_server the bench starts itself
    parser = argparse.ArgumentParser()
    artifacts.add_arguments(parser)
    args = parser.parse_args(["--objects", "2", "--size-mib", "0.25", "--repeats", "1",
                              "--json", str(tmp_path / "artifacts.json")])
    figures = artifacts.run(args)
    assert set(figures["mb_per_s"]) == {"local_write", "raw_local_write", "local_read", "raw_local_read",
                                        "s3_write", "raw_s3_write", "s3_read_cold_cache", "raw_s3_read",
                                        "raw_s3_read_to_file"}
    assert all(rate > 0 for rate in figures["mb_per_s"].values())
    assert figures["ratio_s3_write"] > 0 and figures["ratio_s3_read_cold_cache"] > 0
    assert json.loads((tmp_path / "artifacts.json").read_text()) == figures


def test_noop_bench_compares_ours_raw_and_a_before_tree_at_a_tiny_size(tmp_path: Path) -> None:
    from bench import noop

    parser = argparse.ArgumentParser()
    noop.add_arguments(parser)
    # Given this commit as the "before" tree (what `--before REV` unpacks and runs)
    figures = noop.run(parser.parse_args(["--sizes", "5", "--rounds", "1", "--before", "HEAD",
                                          "--json", str(tmp_path / "noop.json")]))
    # Then each side has a time per task, and ours and before a ratio against raw Dramatiq
    (row,) = figures["rows"]
    assert row["partitions"] == 5 and row["tasks"] == 18
    assert row["ours_ms_per_task"] > 0 and row["raw_ms_per_task"] > 0 and row["before_ms_per_task"] > 0
    assert row["ours_over_raw"] > 0 and row["before_over_raw"] > 0
    assert json.loads((tmp_path / "noop.json").read_text()) == figures
