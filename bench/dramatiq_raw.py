"""Raw Dramatiq no-op actors on a RedisBroker: the baseline that ``bench.fleet`` runs as
``dramatiq bench.dramatiq_raw --processes 2`` (``STAGEBUS_BENCH_REDIS`` names the server).

The same shape as the no-op pipeline: ``ingest -> normalize -> extract`` per partition, each
actor sending the next, then ``link -> index -> serve`` once. Instrumentation is one Redis write
where the bench needs a fact: ``normalize`` pushes the ingest→normalize hop (send to body start,
wall clock, one machine), ``extract`` counts, ``serve`` marks the run done. Like dramatiq's own
CLI needs, the broker is built on import; nothing but the ``dramatiq`` command imports this.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.fleet import done_key, hops_key, served_key

URL = os.environ.get("STAGEBUS_BENCH_REDIS", "redis://localhost:6379/15")
broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)
client = redis.Redis.from_url(URL)


@dramatiq.actor(queue_name="ingest", max_retries=0)
def ingest(run: str, partition: int) -> None:
    normalize.send(run, partition, time.time())


@dramatiq.actor(queue_name="normalize", max_retries=0)
def normalize(run: str, partition: int, sent_at: float) -> None:
    client.rpush(hops_key(run), time.time() - sent_at)
    extract.send(run, partition)


@dramatiq.actor(queue_name="extract", max_retries=0)
def extract(run: str, partition: int) -> None:
    client.incr(done_key(run))


@dramatiq.actor(queue_name="link", max_retries=0)
def link(run: str) -> None:
    index.send(run)


@dramatiq.actor(queue_name="index", max_retries=0)
def index(run: str) -> None:
    serve.send(run)


@dramatiq.actor(queue_name="serve", max_retries=0)
def serve(run: str) -> None:
    client.set(served_key(run), 1)
