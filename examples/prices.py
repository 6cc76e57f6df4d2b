"""A user pipeline: the reference stages plus one of your own (the README's example).

Run it with ``STAGEBUS_PIPELINES=examples.prices:pipeline stagebus publish --pipeline shop …``.
"""

from __future__ import annotations

from pydantic import BaseModel

from stagebus import REFERENCE_STAGES, Pipeline, RetryPolicy, StageContext, stage


class Price(BaseModel):
    sku: str
    cents: int
    currency: str


class PricesConfig(BaseModel):
    currency: str = "EUR"


@stage("prices", after=["normalize"], outputs={"prices": Price}, config=PricesConfig,
       retry=RetryPolicy(max_retries=5), time_limit_s=300)
def prices(ctx: StageContext) -> None:
    for row in ctx.read("normalize", "records"):  # {"index": row number, "record": {...}}
        record = row["record"]
        try:  # a row without a usable sku or price is a reject, not a retry: retrying cannot fix data
            sku, cents = str(record["sku"]), round(float(record["price"]) * 100)
        except (KeyError, TypeError, ValueError) as exc:
            ctx.reject(record, f"no usable sku or price: {exc!r}", row["index"])  # kept, counted
            continue
        ctx.emit("prices", {"sku": sku, "cents": cents, "currency": ctx.config.currency})


pipeline = Pipeline("shop", [*REFERENCE_STAGES, prices], config={"prices": {"currency": "USD"}})
