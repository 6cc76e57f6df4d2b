"""Manifests made directly, for tests that need a stage done without running it."""

from __future__ import annotations

from stagebus.events import Manifest

STAMP = "2024-05-01T12:00:00.000000Z"


def manifest_for(run_id: str, stage: str, partition: str, *, config_hash: str = "c" * 64) -> Manifest:
    return Manifest(stage=stage, run_id=run_id, partition=partition, input_hash="a" * 64, output_hash="b" * 64,
                    config_hash=config_hash, status="complete", started_at=STAMP, ended_at=STAMP, worker="test")
