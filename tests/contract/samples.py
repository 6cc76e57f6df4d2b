"""Events the contract tests append: one keyed type, one unkeyed."""

from __future__ import annotations

from stagebus.events import PipelineStarted, RunOpened


def keyed(run_id: str) -> RunOpened:
    """An event holding the key ``run/{run_id}``."""
    return RunOpened(run_id=run_id, pipeline="contract")


def unkeyed(pipeline: str = "contract") -> PipelineStarted:
    return PipelineStarted(pipeline=pipeline)


def unkeyed_batch(count: int, pipeline: str = "contract") -> list[PipelineStarted]:
    return [PipelineStarted(pipeline=pipeline) for _ in range(count)]
