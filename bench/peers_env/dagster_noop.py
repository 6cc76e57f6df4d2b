"""The no-op six-stage pipeline in Dagster; runs in the peer venv, prints JSON figures.

Shape, as stagebus's no-op pipeline: ingest -> normalize -> extract once per partition, then
link -> index -> serve once over all partitions: 3N + 3 op executions in ONE run. Partitions
are a dynamic fan-out (``DynamicOut`` + ``.map`` + ``.collect``), which keeps one run with the
same tasks as ours; the in-process executor runs the ops (Dagster's lightest executor), and
the instance is ``DagsterInstance.local_temp()``: run and event-log storage in SQLite files, as
ours keeps its log in SQLite (an ephemeral in-memory instance would record nothing durable).

``--runs-per-partition`` instead runs a six-op job once per partition (N runs, 6N ops): the
other reading of "one run per partition", reported for reference.

Usage: python dagster_noop.py PARTITIONS [--runs-per-partition]
"""

import json
import sys
import time
import warnings

started_import = time.perf_counter()
import dagster as dg  # noqa: E402

IMPORT_S = time.perf_counter() - started_import
warnings.filterwarnings("ignore")
# Console logging at WARNING: ours prints nothing per task either. The event log still records all.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dg.op(out=dg.DynamicOut(str))
def partitions(context: dg.OpExecutionContext) -> object:
    for index in range(context.op_config["count"]):
        yield dg.DynamicOutput(f"p{index}", mapping_key=f"p{index}")


@dg.op
def ingest(partition: str) -> str:
    return partition


@dg.op
def normalize(partition: str) -> str:
    return partition


@dg.op
def extract(partition: str) -> str:
    return partition


@dg.op
def link(done: list[str]) -> int:
    return len(done)


@dg.op(name="link_one")
def link_one(partition: str) -> int:
    return 1


@dg.op
def index(count: int) -> int:
    return count


@dg.op
def serve(count: int) -> int:
    return count


@dg.job
def fanned_out() -> None:
    serve(index(link(partitions().map(lambda p: extract(normalize(ingest(p)))).collect())))


@dg.op(config_schema={"partition": str})
def source(context: dg.OpExecutionContext) -> str:
    return str(context.op_config["partition"])


@dg.job
def one_partition() -> None:
    serve(index(link_one(extract(normalize(ingest(source()))))))


def main() -> None:
    count = int(sys.argv[1])
    per_partition = "--runs-per-partition" in sys.argv
    with dg.DagsterInstance.local_temp() as instance:
        started = time.perf_counter()
        if per_partition:
            for p in range(count):
                result = one_partition.execute_in_process(
                    instance=instance, run_config={"ops": {"source": {"config": {"partition": f"p{p}"}}}, **QUIET})
                assert result.success
            tasks = 6 * count
        else:
            result = fanned_out.execute_in_process(
                instance=instance, run_config={"ops": {"partitions": {"config": {"count": count}}}, **QUIET})
            assert result.success and result.output_for_node("serve") == count
            tasks = 3 * count + 3
        seconds = time.perf_counter() - started
    print(json.dumps({"peer": "dagster", "version": dg.__version__, "partitions": count, "tasks": tasks,
                      "seconds": seconds, "import_s": IMPORT_S,
                      "shape": "runs per partition" if per_partition else "one run, dynamic fan-out"}))


if __name__ == "__main__":
    main()
