"""Pipeline authoring: stage contracts (``@stage``), pipelines (validated DAGs), the context a
stage function sees, the per-item journal of long stages, and loading pipelines by name.

Users import these names from :mod:`stagebus`; the modules here are the implementation.
"""

from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import FileOutput, RetryPolicy, StageContract, StageDefinition, stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry, canonical_hash
from stagebus.pipeline.registry import load_pipelines

__all__ = [
    "FileOutput",
    "Pipeline",
    "PipelineRegistry",
    "RetryPolicy",
    "StageContext",
    "StageContract",
    "StageDefinition",
    "canonical_hash",
    "load_pipelines",
    "stage",
]
