"""The module fleet workers import: ``dramatiq stagebus.actors.fleet [--queues extract]``.

Importing it builds a worker from ``STAGEBUS_*`` (see :mod:`stagebus.actors.fleet_setup`): the
log, the broker, the artifact store, the pipelines (the reference pipeline plus
``STAGEBUS_PIPELINES``) and one actor per stage, then makes that broker dramatiq's global one,
which is what the ``dramatiq`` command runs. This is the one place stagebus builds something on
import, because that is how dramatiq finds its actors; nothing else imports this module.
"""

from __future__ import annotations

import dramatiq

from stagebus.actors.fleet_setup import build_worker

worker = build_worker()
broker = worker.broker
dramatiq.set_broker(broker)
