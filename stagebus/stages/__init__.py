"""The reference pipeline: ingest -> normalize -> extract -> link -> index -> serve.

ingest, normalize and extract run per partition; link, index and serve once per sealed run.
Per-stage config (see each stage's config model) is validated when the pipeline is built::

    build_reference_pipeline({"normalize": {"processors": [{"op": "lowercase"}]}})
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from stagebus.actors.contract import StageDefinition
from stagebus.actors.pipeline import Pipeline, PipelineRegistry
from stagebus.errors import InvalidInput

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


def load_registry(specs: str = "") -> PipelineRegistry:
    """The reference pipeline plus every ``module:attribute`` in ``specs`` (comma-separated),
    each a :class:`Pipeline` (or a callable returning one). Raises :class:`InvalidInput`."""
    registry = PipelineRegistry([reference_pipeline])
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        module_name, _, attr = spec.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr or "pipeline")
        except (ImportError, AttributeError) as exc:
            raise InvalidInput(f"cannot load pipeline {spec!r}: {exc}") from None
        pipeline = target() if callable(target) and not isinstance(target, Pipeline) else target
        if not isinstance(pipeline, Pipeline):
            raise InvalidInput(f"{spec!r} is not a stagebus Pipeline")
        registry.add(pipeline)
    return registry

__all__ = [
    "REFERENCE_PIPELINE",
    "REFERENCE_STAGES",
    "build_reference_pipeline",
    "load_registry",
    "reference_pipeline",
]
