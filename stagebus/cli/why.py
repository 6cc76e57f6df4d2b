"""``stagebus why DATASET/PARTITION``: the chain of facts from the log that explains a partition's state."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout
from stagebus.errors import InvalidInput
from stagebus.projections.explain import explain

STYLE = {"failed": "red", "blocked": "red", "abandoned": "red", "stopped": "yellow", "waiting": "yellow",
         "running": "yellow", "reused": "cyan", "executed": "green"}


def why(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The partition, as DATASET/PARTITION.", show_default=False)],
    run_id: Annotated[str | None, typer.Option("--run", help="Explain this run (default: the ledger's run).")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage's fact.")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Explain a partition's state from the log; each line names the log positions it rests on (read-only)."""
    check_choice("format", output, FORMATS)
    dataset, slash, partition = ref.partition("/")
    if not slash or not dataset or not partition:
        raise InvalidInput(f"{ref!r} is not DATASET/PARTITION")
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    result = explain(projections, dataset, partition, run_id=run_id, stage=stage)
    if output == "json":
        print_json(result)
        return
    console = stdout()
    shown = f" at run {result.ledger_run_id}" if result.ledger_run_id else ""
    reason = f" ({result.reason})" if result.reason else ""
    console.print(f"{ref}: {result.status}{shown}{reason}; explaining run {result.run_id}", markup=False,
                  soft_wrap=True)
    for fact in result.facts:
        at = ", ".join(f"#{p}" for p in fact.positions)
        color = STYLE.get(fact.kind, "default")
        # The text is a sentence that starts with what happened; the colour carries the kind.
        cited = f"log {at}" if at else "nothing logged yet"
        console.print(f"  [{color}]{_escape(fact.text)}[/]  [dim]{cited}[/]", soft_wrap=True)


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def register(app: typer.Typer) -> None:
    app.command("why")(why)
