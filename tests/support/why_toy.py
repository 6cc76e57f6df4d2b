"""The toy pipeline with another ``double.factor``: a config change `stagebus why` must name."""

from __future__ import annotations

from stagebus.pipeline.definition import Pipeline
from tests.support.toy import toy_pipeline


def factor3() -> Pipeline:
    return toy_pipeline(3)
