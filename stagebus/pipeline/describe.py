"""A pipeline's contracts in a form a reviewer reads, and what a changed pipeline breaks.

:func:`describe` gives per stage what it reads, what it writes (with the JSON Schema of each
output's records), when it may start (the gate) and what its manifest must hold when it ends.
:func:`dag_lines` draws the DAG. :func:`compare` lists, per stage, the changes between two
versions of a pipeline and whether each breaks what runs today.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from stagebus.pipeline.contract import REJECTS, StageDefinition
from stagebus.pipeline.definition import Pipeline

MANIFEST_PATH = "runs/{run_id}/{stage}/{dataset}/{partition}/manifest.json"
RUN_MANIFEST_PATH = "runs/{run_id}/{stage}/*/manifest.json"


def reads_of(pipeline: Pipeline, stage: str) -> list[str]:
    """The upstream outputs ``stage`` reads, ``stage.output``: declared, or every output of ``after``."""
    contract = pipeline[stage].contract
    if contract.reads:
        return list(contract.reads)
    return [f"{up}.{output}" for up in contract.after for output in pipeline[up].contract.outputs]


def describe(pipeline: Pipeline) -> dict[str, Any]:
    return {"pipeline": pipeline.name, "version": pipeline.version, "dag": dag_lines(pipeline),
            "stages": [_stage(pipeline, d) for d in pipeline.stages]}


def _stage(pipeline: Pipeline, d: StageDefinition) -> dict[str, Any]:
    c = d.contract
    if not c.after:
        entry = "a PartitionIngested event for the partition (the producer published it)"
    elif c.scope == "run":
        entry = (f"the run is sealed and manifests of {', '.join(c.after)} exist for every partition of the "
                 "same run_id")
    else:
        entry = f"manifests of {', '.join(c.after)} exist for the same run_id and partition"
    outputs = {name: {"file": c.is_file(name), "schema": model.model_json_schema()}
               for name, model in c.outputs.items()}
    return {
        "stage": c.name, "after": list(c.after), "scope": c.scope, "reads": reads_of(pipeline, c.name),
        "outputs": outputs,
        "entry": entry,
        "exit": (f"a ManifestWritten event (written last) listing the artifacts {', '.join([*c.outputs, REJECTS])}"
                 " with sha256 and size, the input, output and config hashes, and the record counts"),
        "manifest_path": RUN_MANIFEST_PATH if c.scope == "run" else MANIFEST_PATH,
        "config_schema": c.config.model_json_schema(),
        "config": pipeline.configs[c.name].model_dump(mode="json"),
        "config_hash": pipeline.config_hash(c.name),
        "retry": c.retry.model_dump(), "time_limit_s": c.time_limit_s, "version": c.version,
        "reusable": c.reusable,
        "quality": pipeline.quality[c.name].limits, "sensitive": sorted(c.sensitive_fields()),
    }


def dag_lines(pipeline: Pipeline) -> list[str]:
    """The DAG as an indented tree: each stage under its first upstream stage; a fan-in stage
    says which other stages it also waits for."""
    lines: list[str] = []
    shown: set[str] = set()

    def draw(stage: str, prefix: str, last: bool, root: bool) -> None:
        after = pipeline[stage].contract.after
        also = f"  (also after {', '.join(after[1:])})" if len(after) > 1 else ""
        lines.append(stage + also if root else f"{prefix}{'└─ ' if last else '├─ '}{stage}{also}")
        shown.add(stage)
        children = [s for s in pipeline.downstream(stage) if pipeline[s].contract.after[0] == stage]
        inner = "" if root else prefix + ("   " if last else "│  ")
        for i, child in enumerate(children):
            draw(child, inner, i == len(children) - 1, False)

    for first in pipeline.first_stages():
        draw(first, "", True, True)
    return lines


Severity = Literal["incompatible", "compatible"]


class Change(NamedTuple):
    stage: str
    severity: Severity
    what: str


def compare(old: Pipeline, new: Pipeline) -> list[Change]:
    """Changes from ``old`` to ``new``, per stage. Incompatible: a removed stage or output, a
    changed ``after`` or scope, or an output schema that drops or retypes a field a stage of the
    new pipeline reads. Compatible (listed so a reviewer sees them): new stages, outputs and
    fields, and config changes (they only change the config hash, so those stages run again)."""
    changes: list[Change] = []
    for d in old.stages:
        if d.name not in new:
            changes.append(Change(d.name, "incompatible", "stage removed"))
    for d in new.stages:
        if d.name not in old:
            changes.append(Change(d.name, "compatible", f"new stage after {', '.join(d.contract.after) or 'nothing'}"))
            continue
        before, after = old[d.name].contract, d.contract
        if before.after != after.after:
            changes.append(Change(d.name, "incompatible",
                                  f"after changed: {list(before.after)} -> {list(after.after)}"))
        if before.scope != after.scope:
            changes.append(Change(d.name, "incompatible", f"scope changed: {before.scope} -> {after.scope}"))
        changes.extend(_output_changes(old, new, d.name))
        if old.config_hash(d.name) != new.config_hash(d.name):
            changes.append(Change(d.name, "compatible", "config or version changed: this stage runs again"))
    return changes


def _output_changes(old: Pipeline, new: Pipeline, stage: str) -> list[Change]:
    before, after = old[stage].contract.outputs, new[stage].contract.outputs
    readers = {output: [s.name for s in new.stages if f"{stage}.{output}" in reads_of(new, s.name)]
               for output in before}
    changes = []
    for output in before:
        if output not in after:
            changes.append(Change(stage, "incompatible", f"output {output!r} removed"))
            continue
        old_fields = _fields(before[output].model_json_schema())
        new_fields = _fields(after[output].model_json_schema())
        severity: Severity = "incompatible" if readers[output] else "compatible"
        read_by = f" (read by {', '.join(readers[output])})" if readers[output] else " (read by no stage)"
        for field in sorted(old_fields.keys() - new_fields.keys()):
            changes.append(Change(stage, severity, f"output {output!r} drops field {field!r}{read_by}"))
        for field in sorted(old_fields.keys() & new_fields.keys()):
            if old_fields[field] != new_fields[field]:
                changes.append(Change(stage, severity, f"output {output!r} retypes field {field!r}: "
                                      f"{_type(old_fields[field])} -> {_type(new_fields[field])}{read_by}"))
        for field in sorted(new_fields.keys() - old_fields.keys()):
            changes.append(Change(stage, "compatible", f"output {output!r} adds field {field!r}"))
    changes.extend(Change(stage, "compatible", f"new output {output!r}") for output in after if output not in before)
    return changes


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    """Each property's schema without the words that describe it (title, description)."""
    return {name: _strip(spec) for name, spec in schema.get("properties", {}).items()}


def _strip(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {k: _strip(v) for k, v in spec.items() if k not in ("title", "description", "examples")}
    if isinstance(spec, list):
        return [_strip(v) for v in spec]
    return spec


def _type(spec: dict[str, Any]) -> str:
    if "type" in spec:
        return str(spec["type"])
    if "anyOf" in spec:
        return " | ".join(_type(s) for s in spec["anyOf"])
    return str(spec.get("$ref", "any")).rsplit("/", 1)[-1]
