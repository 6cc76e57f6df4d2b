"""Stage contracts: what a stage declares about itself, checked when it is defined.

Authoring::

    @stage("normalize", after=["ingest"], outputs={"records": Record}, config=NormalizeConfig)
    def normalize(ctx: StageContext) -> None:
        for record in ctx.read("ingest", "records"):
            ctx.emit("records", clean(record))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
) -> Callable[[StageFunction], StageDefinition]:
    """Declare a stage. Raises :class:`ContractError` at definition time for a bad contract."""
    try:
        contract = StageContract(
            name=name, after=tuple(after), scope=scope, config=config, outputs=outputs or {}, reads=tuple(reads),
            retry=retry or RetryPolicy(), time_limit_s=time_limit_s, version=version, reusable=reusable,
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
