"""Stage contracts: what a stage declares about itself, checked when it is defined.

Authoring::

    @stage("normalize", after=["ingest"], outputs={"records": Record}, config=NormalizeConfig)
    def normalize(ctx: StageContext) -> None:
        for record in ctx.read("ingest", "records"):
            ctx.emit("records", clean(record))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, field_validator

from stagebus.errors import ContractError

if TYPE_CHECKING:
    from stagebus.pipeline.context import StageContext

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
REJECTS = "rejects"


class FileOutput(BaseModel):
    """Marker for an output that is one opaque file (an index, an image) rather than records."""


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(BaseModel):
    """Dramatiq Retries options for one stage; a permanent error is never retried."""

    model_config = ConfigDict(frozen=True)
    max_retries: int = Field(default=3, ge=0, le=100)
    min_backoff_ms: int = Field(default=200, ge=0)
    max_backoff_ms: int = Field(default=30_000, ge=0)


class QualityPolicy(BaseModel):
    """Bounds on a task's rejects; a task that breaks one fails for good (its outputs discarded).

    Counted per task (one partition, or a run-level stage's whole run): ``total`` is the records
    the stage took in (``records_in``; a stage that counts no inputs: records out plus rejects),
    ``accepted`` is ``total - rejected``. Every bound is off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_rejected_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    max_rejected: int | None = Field(default=None, ge=0)
    min_records: int | None = Field(default=None, ge=0)

    @property
    def limits(self) -> dict[str, float | int]:
        """The bounds that are set, for the config hash (an unset policy hashes as before)."""
        return self.model_dump(exclude_none=True)

    def violation(self, total: int, rejected: int) -> str | None:
        """The first bound ``rejected`` of ``total`` records breaks, named with its numbers, or None."""
        share = rejected / total if total else 0.0
        counted = f"rejected {rejected} of {total} records ({_percent(share)})"
        if self.max_rejected is not None and rejected > self.max_rejected:
            return f"{counted} > max_rejected {self.max_rejected}"
        if self.max_rejected_ratio is not None and share > self.max_rejected_ratio:
            return f"{counted} > max_rejected_ratio {_percent(self.max_rejected_ratio)}"
        if self.min_records is not None and total - rejected < self.min_records:
            return f"{total - rejected} records accepted ({counted}) < min_records {self.min_records}"
        return None


def _percent(share: float) -> str:
    return f"{share * 100:.4g}%"


class StageContract(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    after: tuple[str, ...] = ()
    scope: Literal["partition", "run"] = "partition"
    config: type[BaseModel] = NoConfig
    outputs: dict[str, type[BaseModel]] = {}
    # Upstream outputs the stage reads, "stage.output"; empty means every output of ``after``.
    # Declared reads let `pipeline check` tell which schema changes break which stage.
    reads: tuple[str, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    time_limit_s: float = Field(default=600.0, gt=0)
    version: str = "1"  # bump when the stage's code changes what it produces
    # False for a stage whose effect lies outside its artifacts (serve moves a pointer): a
    # manifest copied from an earlier run would skip that effect, so it must always execute.
    reusable: bool = True
    quality: QualityPolicy = QualityPolicy()  # the default; a pipeline's config may override it
    # Record fields whose values `stagebus rejects` shows as "***" (any stage's mark counts for
    # the whole pipeline, since a record passes through every stage).
    sensitive: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"stage name {value!r} must match {NAME.pattern}")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, schema in value.items():
            if not NAME.match(name) or name == REJECTS:
                raise ValueError(f"output name {name!r} must match {NAME.pattern} and not be {REJECTS!r}")
            if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise ValueError(f"output {name!r}: its schema must be a pydantic model class, not {schema!r}")
        return value

    @field_validator("reads")
    @classmethod
    def _reads(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for read in value:
            stage_name, _, output = read.partition(".")
            if not (NAME.match(stage_name) and NAME.match(output)):
                raise ValueError(f"read {read!r} must be 'stage.output'")
        return value

    @field_validator("sensitive")
    @classmethod
    def _sensitive(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for field in value:
            if not isinstance(field, str) or not field.strip():
                raise ValueError(f"sensitive field {field!r} must be a non-empty field name")
        return value

    def sensitive_fields(self) -> frozenset[str]:
        """Fields declared ``sensitive=``, plus those an output schema marks itself: typed
        ``SecretStr``/``SecretBytes``, or ``Field(json_schema_extra={"sensitive": True})``."""
        fields = set(self.sensitive)
        for schema in self.outputs.values():
            for name, info in schema.model_fields.items():
                extra = info.json_schema_extra
                secret = isinstance(info.annotation, type) and issubclass(info.annotation, (SecretStr, SecretBytes))
                if secret or (isinstance(extra, dict) and extra.get("sensitive") is True):
                    fields.add(info.alias or name)
        return frozenset(fields)

    def reads_output(self, stage: str, output: str) -> bool:
        """Whether this stage may read ``stage``'s ``output``: it declared so, or declared no reads."""
        return f"{stage}.{output}" in self.reads if self.reads else stage in self.after

    def is_file(self, output: str) -> bool:
        return issubclass(self.outputs[output], FileOutput)


StageFunction = Callable[["StageContext"], None]


class StageDefinition:
    """A contract bound to the function that does the stage's work."""

    def __init__(self, contract: StageContract, fn: StageFunction) -> None:
        self.contract = contract
        self.fn = fn

    @property
    def name(self) -> str:
        return self.contract.name

    def __call__(self, ctx: StageContext) -> None:
        self.fn(ctx)

    def __repr__(self) -> str:
        return f"<stage {self.name} after={list(self.contract.after)} scope={self.contract.scope}>"


def stage(
    name: str,
    *,
    after: list[str] | tuple[str, ...] = (),
    scope: Literal["partition", "run"] = "partition",
    config: type[BaseModel] = NoConfig,
    outputs: dict[str, type[BaseModel]] | None = None,
    reads: list[str] | tuple[str, ...] = (),
    retry: RetryPolicy | None = None,
    time_limit_s: float = 600.0,
    version: str = "1",
    reusable: bool = True,
    quality: QualityPolicy | Mapping[str, Any] | None = None,
    sensitive: list[str] | tuple[str, ...] = (),
) -> Callable[[StageFunction], StageDefinition]:
    """Declare a stage. Raises :class:`ContractError` at definition time for a bad contract."""
    try:
        contract = StageContract(
            name=name, after=tuple(after), scope=scope, config=config, outputs=outputs or {}, reads=tuple(reads),
            retry=retry or RetryPolicy(), time_limit_s=time_limit_s, version=version, reusable=reusable,
            quality=QualityPolicy.model_validate(quality or {}), sensitive=tuple(sensitive),
        )
    except ValueError as exc:
        raise ContractError(f"stage {name!r}: {_first_error(exc)}") from None

    def bind(fn: StageFunction) -> StageDefinition:
        return StageDefinition(contract, fn)

    return bind


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", exc)).removeprefix("Value error, ")
    return str(exc)
