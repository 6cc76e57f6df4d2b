"""The reference pipeline with a warehouse load (see docs/warehouse.md): each partition's
normalized records go to the table ``records`` of the warehouse that ``STAGEBUS_LOAD_DSN``
names in the worker's environment, and the load's manifest counts the rows::

    export STAGEBUS_PIPELINES=examples.warehouse:pipeline STAGEBUS_LOAD_DSN=sqlite:///warehouse.db
    stagebus publish --pipeline warehoused --dataset airports --dir ./data/airports --seal
    stagebus run
"""

from stagebus import REFERENCE_STAGES, Pipeline, warehouse_stage

pipeline = Pipeline("warehoused", [*REFERENCE_STAGES,
                                   warehouse_stage("load", after=["normalize"], table="records")])
