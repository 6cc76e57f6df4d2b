"""stagebus: an event-sourced pipeline-stage orchestrator.

The producer API is here; everything else lives in the subpackages ``events``, ``store``,
``projections``, ``actors``, ``stages`` and ``cli``.
"""

from stagebus.producer import Producer, PublishResult, open_producer

__version__ = "0.1.0"
__all__ = ["Producer", "PublishResult", "open_producer"]
