"""A pipeline with a sensitive field: the reference stages plus ``charges``, which rejects a
charge without a usable amount and marks ``card_number`` sensitive. Used as
``STAGEBUS_PIPELINES=support.cards:pipeline`` (tests/ is on the path)."""

from __future__ import annotations

from pydantic import BaseModel

from stagebus import REFERENCE_STAGES, Pipeline, StageContext, stage


class Charge(BaseModel):
    card_number: str
    cents: int


@stage("charges", after=["normalize"], outputs={"charges": Charge}, sensitive=["card_number"])
def charges(ctx: StageContext) -> None:
    for row in ctx.read("normalize", "records"):
        record = row["record"]
        try:
            cents = round(float(record["amount"]) * 100)
        except (KeyError, TypeError, ValueError) as exc:
            ctx.reject(record, f"no usable amount: {exc!r}", row["index"])
            continue
        ctx.emit("charges", {"card_number": str(record.get("card_number", "")), "cents": cents})


pipeline = Pipeline("cards", [*REFERENCE_STAGES, charges])

# The reference stages under a quality policy: any rejected row fails the partition.
strict = Pipeline("strict", REFERENCE_STAGES, config={"ingest": {"quality": {"max_rejected": 0}}})
