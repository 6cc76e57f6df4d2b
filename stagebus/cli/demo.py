"""``stagebus demo``: the main job — the reference pipeline on real data, in embedded mode.

The data is the docstrings of this Python's standard library, read with ``ast`` (nothing is
imported): real text nobody on the team wrote, on every machine, offline. Every invocation
opens a new run over the same partitions, so a second demo shows reuse: nothing executes again.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stagebus.cli._context import get_context
from stagebus.cli._runner import outcome_table, run_with_progress
from stagebus.cli.query import hits_table
from stagebus.pipeline.registry import load_pipelines
from stagebus.producer import Producer
from stagebus.stages import reference_pipeline
from stagebus.stages.demo_data import write_demo_corpus
from stagebus.stages.query import search

DATASET = "stdlib"
EXAMPLE_QUERIES = ("json decoder", "thread lock")


def demo(
    ctx: typer.Context,
    partitions: Annotated[int | None, typer.Option("--partitions", min=1, help="Use only the N largest groups.")
                          ] = None,
    small: Annotated[bool, typer.Option("--small", help="A four-partition slice, for a quick look.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker threads.")] = 2,
) -> None:
    """Run the six-stage reference pipeline on the standard library's docstrings and show the result."""
    app = get_context(ctx)
    console = Console()
    home = app.settings.home
    started = time.perf_counter()
    console.rule(f"stagebus demo — home {home}")
    files = write_demo_corpus(home / "demo-data", limit_partitions=partitions, small=small)
    console.print(f"corpus: {len(files)} partitions of Python standard library docstrings in {home / 'demo-data'}")

    store = app.store()
    projections = app.projections()
    pipeline = reference_pipeline
    producer = Producer(store, pipeline.name, pipeline.plan(), pipeline.version, projections=projections)
    run_id = producer.open_run()
    for path in files:
        producer.publish(DATASET, path.stem, path, {"source": "python-stdlib-docstrings"}, run_id=run_id)
    producer.seal(run_id)
    console.print(f"published run [bold]{run_id}[/bold]: {len(files)} partitions, sealed")

    report = run_with_progress(app, load_pipelines(app.settings.pipelines), console, run_ids=[run_id],
                               only_stages=None, workers=workers, log_file=None)
    console.print(outcome_table(report))
    reused = report.outcomes.get("reused", 0)
    total = sum(report.outcomes.values())
    if reused:
        sources = sorted({m.reused_from for m in projections.manifests(run_id) if m.reused_from})
        console.print(f"[green]reused {reused} of {total} stage tasks[/green] from run(s) {', '.join(sources)}: "
                      "same inputs and config, nothing executed again (serve runs again and changes nothing)")

    projections.catch_up()
    ledger = projections.ledger(dataset=DATASET)
    counts = Counter(entry.status for entry in ledger)
    console.print(f"ledger for dataset {DATASET!r}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    console.print(manifest_table(projections.rollups(run_id), run_id))
    for text in EXAMPLE_QUERIES:
        console.print(hits_table(search(app.settings.artifacts_root, text, dataset=DATASET, limit=3),
                                 f"stagebus query {text!r}"))
    console.print(f"done in {time.perf_counter() - started:.1f} s. Next: `stagebus state inspect`, "
                  f"`stagebus manifest show {run_id}`, `stagebus query TEXT`, `stagebus replay --verify`.")
    if report.failed:
        raise typer.Exit(1)


def manifest_table(rollups: list, run_id: str) -> Table:  # type: ignore[type-arg]
    table = Table(title=f"manifests of run {run_id}")
    for column in ("stage", "tasks", "complete", "reused", "in", "out", "rejected", "seconds"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    order = {d.name: i for i, d in enumerate(reference_pipeline.stages)}
    for r in sorted(rollups, key=lambda r: order.get(r.stage, 99)):
        table.add_row(r.stage, str(r.manifests), str(r.complete), str(r.reused), str(r.records_in),
                      str(r.records_out), str(r.records_rejected), f"{r.duration_s:.2f}")
    return table


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
