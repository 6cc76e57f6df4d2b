"""The reference pipeline under a quality policy (see docs/quality.md): a partition whose ingest
rejects more than 5% of its rows, or that keeps no record at all, is invalid and goes no further."""

from stagebus import REFERENCE_STAGES, Pipeline

pipeline = Pipeline("strict", REFERENCE_STAGES, config={
    "ingest": {"quality": {"max_rejected_ratio": 0.05, "min_records": 1}},
})
