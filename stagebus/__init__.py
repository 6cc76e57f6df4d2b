"""stagebus: an event-sourced pipeline-stage orchestrator."""

__version__ = "0.1.0"
