"""Pipelines: a named DAG of stages with per-stage config, validated when defined."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from stagebus.errors import ContractError, InvalidInput
from stagebus.events import PlannedStage
from stagebus.pipeline.contract import QualityPolicy, StageDefinition

QUALITY = "quality"  # the key of a stage's config mapping that holds its quality policy

_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(_CANONICAL.encode(data)).hexdigest()


class Pipeline:
    """A validated DAG. ``stages`` come out in a deterministic topological order."""

    def __init__(self, name: str, stages: Iterable[StageDefinition], *, version: str = "1",
                 config: Mapping[str, Mapping[str, Any] | BaseModel] | None = None) -> None:
        self.name = name
        self.version = version
        defs = list(stages)
        by_name: dict[str, StageDefinition] = {}
        for d in defs:
            if d.name in by_name:
                raise ContractError(f"pipeline {name!r}: stage {d.name!r} is defined twice")
            by_name[d.name] = d
        for d in defs:
            for up in d.contract.after:
                if up not in by_name:
                    raise ContractError(f"pipeline {name!r}: stage {d.name!r} runs after unknown stage {up!r}")
            for read in d.contract.reads:
                up, _, output = read.partition(".")
                if up not in d.contract.after or output not in by_name[up].contract.outputs:
                    raise ContractError(f"pipeline {name!r}: stage {d.name!r} reads {read!r}, which is not an "
                                        f"output of a stage it runs after")
            if d.contract.scope == "partition" and any(by_name[u].contract.scope == "run" for u in d.contract.after):
                raise ContractError(
                    f"pipeline {name!r}: partition stage {d.name!r} cannot run after a run-level stage"
                )
        self._stages = {d.name: d for d in _topological(name, defs)}
        unknown = set(config or {}) - set(self._stages)
        if unknown:
            raise ContractError(f"pipeline {name!r}: config for unknown stage(s) {sorted(unknown)}")
        self.configs: dict[str, BaseModel] = {}
        self._config_hashes: dict[str, str] = {}
        self.quality: dict[str, QualityPolicy] = {}
        for stage_name, d in self._stages.items():
            raw = (config or {}).get(stage_name, {})
            if QUALITY in d.contract.config.model_fields:
                raise ContractError(f"stage {stage_name!r}: its config model has a field {QUALITY!r}, a key that "
                                    "pipeline config keeps for the stage's quality policy; rename the field")
            if isinstance(raw, Mapping) and QUALITY in raw:
                raw = dict(raw)
                self.quality[stage_name] = _quality(stage_name, d.contract.quality, raw.pop(QUALITY))
            else:
                self.quality[stage_name] = d.contract.quality
            try:
                self.configs[stage_name] = raw if isinstance(raw, d.contract.config) else \
                    d.contract.config.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "config"
                raise InvalidInput(f"stage {stage_name!r} config: {where}: {err['msg']}") from None
            if isinstance(raw, Mapping) and (extra := _unknown_keys(d.contract.config, raw)):
                known = ", ".join(sorted(d.contract.config.model_fields)) or "none"
                raise InvalidInput(f"stage {stage_name!r} config: unknown key(s) {', '.join(extra)} (known: {known})")

    @property
    def stages(self) -> list[StageDefinition]:
        return list(self._stages.values())

    def __getitem__(self, stage: str) -> StageDefinition:
        try:
            return self._stages[stage]
        except KeyError:
            raise InvalidInput(f"pipeline {self.name!r} has no stage {stage!r}") from None

    def __contains__(self, stage: str) -> bool:
        return stage in self._stages

    def config_hash(self, stage: str) -> str:
        """Hash of the stage's canonical config plus its declared version (computed once: a
        pipeline's stages and configs are fixed when it is built)."""
        if stage not in self._config_hashes:
            self._config_hashes[stage] = self._config_hash(stage)
        return self._config_hashes[stage]

    def _config_hash(self, stage: str) -> str:
        d = self[stage]
        hashed: dict[str, Any] = {"stage": stage, "version": d.contract.version,
                                  "config": self.configs[stage].model_dump(mode="json")}
        if limits := self.quality[stage].limits:  # only when set: a stage without a policy hashes as before
            hashed[QUALITY] = limits
        return canonical_hash(hashed)

    def downstream(self, stage: str) -> list[str]:
        """Stages that run directly after ``stage``."""
        return [d.name for d in self._stages.values() if stage in d.contract.after]

    def closure(self, stage: str) -> set[str]:
        """``stage`` and every stage downstream of it, transitively."""
        seen, todo = {stage}, [stage]
        while todo:
            for nxt in self.downstream(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def first_stages(self) -> list[str]:
        return [d.name for d in self._stages.values() if not d.contract.after]

    def plan(self) -> tuple[PlannedStage, ...]:
        return tuple(
            PlannedStage(name=d.name, after=d.contract.after, scope=d.contract.scope,
                         config_hash=self.config_hash(d.name),
                         config=self.configs[d.name].model_dump(mode="json"))
            for d in self._stages.values()
        )

    def with_config(self, config: Mapping[str, Mapping[str, Any]]) -> Pipeline:
        merged: dict[str, Any] = {k: v.model_dump() for k, v in self.configs.items()}
        for k, policy in self.quality.items():
            if policy != self[k].contract.quality:
                merged[k][QUALITY] = policy.model_dump(exclude_none=True)
        for k, v in config.items():
            merged[k] = {**merged.get(k, {}), **v}
        return Pipeline(self.name, self.stages, version=self.version, config=merged)


def _quality(stage: str, default: QualityPolicy, raw: Any) -> QualityPolicy:
    """The contract's policy with the bounds a pipeline's config sets (None lifts one)."""
    if isinstance(raw, QualityPolicy):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"stage {stage!r} config: quality: expected a mapping of bounds, got {type(raw).__name__}")
    try:
        return QualityPolicy.model_validate({**default.model_dump(), **raw})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"stage {stage!r} config: quality.{where}: {err['msg']}") from None


def _unknown_keys(model: type[BaseModel], raw: Mapping[str, Any]) -> list[str]:
    """Keys of ``raw`` that ``model`` has no field for. A misspelt key would otherwise be
    ignored and its default used in silence; a model that says ``extra="allow"`` keeps them."""
    if model.model_config.get("extra") == "allow":
        return []
    names = {alias for name, f in model.model_fields.items() for alias in (name, f.alias, f.validation_alias)
             if isinstance(alias, str)}
    return sorted(repr(key) for key in raw if key not in names)


def _topological(name: str, defs: list[StageDefinition]) -> list[StageDefinition]:
    # Kahn's algorithm in declaration order, so the order is stable across processes.
    remaining = {d.name: set(d.contract.after) for d in defs}
    order: list[StageDefinition] = []
    while remaining:
        ready = [d for d in defs if d.name in remaining and not remaining[d.name]]
        if not ready:
            raise ContractError(f"pipeline {name!r}: stages {sorted(remaining)} form a cycle")
        for d in ready:
            del remaining[d.name]
            order.append(d)
        for deps in remaining.values():
            deps.difference_update(d.name for d in ready)
    return order


class PipelineRegistry:
    """The pipelines a process knows, by name. Passed explicitly; no global singleton."""

    def __init__(self, pipelines: Iterable[Pipeline] = ()) -> None:
        self._pipelines = {p.name: p for p in pipelines}

    def add(self, pipeline: Pipeline) -> None:
        self._pipelines[pipeline.name] = pipeline

    def get(self, name: str) -> Pipeline:
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise InvalidInput(f"unknown pipeline {name!r} (known: {known})") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._pipelines.values())

