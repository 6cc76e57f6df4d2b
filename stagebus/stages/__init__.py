"""The reference pipeline: ingest -> normalize -> extract -> link -> index -> serve.

ingest, normalize and extract run per partition; link, index and serve once per sealed run.
Per-stage config (see each stage's config model) is validated when the pipeline is built::

    build_reference_pipeline({"normalize": {"processors": [{"op": "lowercase"}]}})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagebus.pipeline.contract import StageDefinition
from stagebus.pipeline.definition import Pipeline

# Modules, not their stage objects, keep the package's names: ``stagebus.stages.normalize`` is
# the module (its config models, helpers), ``stagebus.stages.normalize.normalize`` the stage.
from stagebus.stages import extract, index, ingest, link, normalize, serve

REFERENCE_PIPELINE = "reference"
REFERENCE_VERSION = "1"
REFERENCE_STAGES: tuple[StageDefinition, ...] = (
    ingest.ingest, normalize.normalize, extract.extract, link.link, index.index, serve.serve,
)


def build_reference_pipeline(config: Mapping[str, Mapping[str, Any]] | None = None) -> Pipeline:
    """The reference pipeline with ``config`` per stage name. Raises
    :class:`~stagebus.errors.InvalidInput` naming the stage and field of an invalid config."""
    return Pipeline(REFERENCE_PIPELINE, REFERENCE_STAGES, version=REFERENCE_VERSION, config=config)


reference_pipeline = build_reference_pipeline()


__all__ = [
    "REFERENCE_PIPELINE",
    "REFERENCE_STAGES",
    "build_reference_pipeline",
    "reference_pipeline",
]
