"""Record processors an API pipeline's config names: the reference normalize operations and
user processors declared with :func:`processor`.

Authoring a custom processor::

    class Prefix(BaseModel):
        text: str

    @processor("prefix", config=Prefix)
    def prefix(record: dict, config: Prefix) -> dict:
        if "id" not in record:
            raise RecordRejected("no id")
        return {**record, "id": config.text + str(record["id"])}

A processor returns the record to pass on and raises :class:`RecordRejected` (or ``ValueError``)
to reject it; the rejection becomes a per-record batch error naming the processor. Modules of
processors are loaded by ``STAGEBUS_PROCESSORS`` (``module`` or ``module:attribute``,
comma-separated), the way ``STAGEBUS_PIPELINES`` loads pipelines. No registry is global: a
:class:`ProcessorRegistry` is built and passed where it is needed.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from stagebus.errors import InvalidInput
from stagebus.pipeline.contract import NAME
from stagebus.stages import normalize

ProcessorFunction = Callable[[dict[str, Any], Any], "dict[str, Any] | None"]


class RecordRejected(ValueError):
    """Raised by a processor: this record cannot go on; the message says why."""


class _Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ProcessorDefinition:
    name: str
    config: type[BaseModel]
    fn: ProcessorFunction

    def validate(self, raw: dict[str, Any]) -> BaseModel:
        """The processor's config; raises pydantic's ``ValidationError``."""
        return self.config.model_validate(raw)

    def compile(self, raw: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        config = self.validate(raw)

        def run(record: dict[str, Any]) -> dict[str, Any]:
            out = self.fn(record, config)
            return record if out is None else out

        return run


def processor(name: str, *, config: type[BaseModel] | None = None) -> Callable[[ProcessorFunction],
                                                                              ProcessorDefinition]:
    """Declare a record processor named ``name`` whose config is validated by ``config``."""
    if not NAME.match(name):
        raise InvalidInput(f"processor name {name!r} must match {NAME.pattern}")

    def bind(fn: ProcessorFunction) -> ProcessorDefinition:
        return ProcessorDefinition(name, config or _Empty, fn)

    return bind


# --- the reference normalize operations, one processor each ---------------------------------


def _reference(op: str, model: type[BaseModel]) -> ProcessorDefinition:
    """A normalize operation as a processor: its config is the operation's model without ``op``."""
    fields = {k: v for k, v in model.model_fields.items() if k != "op"}
    config = type(f"{model.__name__}Config", (BaseModel,), {
        "__annotations__": {k: f.annotation for k, f in fields.items()},
        **{k: f for k, f in fields.items()},
        "model_config": ConfigDict(extra="forbid", frozen=True),
        "__module__": __name__,
    })

    def run(record: dict[str, Any], cfg: Any) -> dict[str, Any]:
        step = normalize.compile_processor(model.model_validate({"op": op, **cfg.model_dump()}))  # type: ignore[arg-type]
        try:
            return normalize.apply([step], record)
        except normalize.RecordError as exc:
            raise RecordRejected(str(exc)) from None

    # Validation runs the original model too, so its own validators (rename clashes) apply.
    class Checked(config):  # type: ignore[valid-type,misc]
        def model_post_init(self, context: Any) -> None:
            model.model_validate({"op": op, **self.model_dump()})

    Checked.__name__ = config.__name__
    return ProcessorDefinition(op, Checked, run)


REFERENCE_PROCESSORS: tuple[ProcessorDefinition, ...] = tuple(
    _reference(op, model) for op, model in (
        ("rename", normalize.Rename), ("cast", normalize.Cast), ("whitespace", normalize.Whitespace),
        ("nfc", normalize.Nfc), ("lowercase", normalize.Lowercase), ("drop", normalize.Drop),
        ("require", normalize.Require), ("max_length", normalize.MaxLength), ("default", normalize.Default),
    )
)


class ProcessorRegistry:
    """The processors a process knows, by name: the reference ones plus those loaded."""

    def __init__(self, extra: Iterable[ProcessorDefinition] = ()) -> None:
        self._by_name = {p.name: p for p in (*REFERENCE_PROCESSORS, *extra)}

    def get(self, name: str) -> ProcessorDefinition | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def validate(self, name: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """The errors of one processor's config (empty: valid), each ``{loc, msg}``."""
        definition = self.get(name)
        if definition is None:
            return [{"loc": ["name"], "msg": f"unknown processor {name!r} (known: {', '.join(self.names())})"}]
        try:
            definition.validate(raw)
        except ValidationError as exc:
            return [{"loc": ["config", *err["loc"]], "msg": err["msg"].removeprefix("Value error, ")}
                    for err in exc.errors()]
        return []


def load_processors(specs: str = "") -> ProcessorRegistry:
    """The reference processors plus every ``module`` or ``module:attribute`` in ``specs``.
    A bare module contributes every processor defined at its top level. Raises InvalidInput."""
    found: list[ProcessorDefinition] = []
    user_specs = [s.strip() for s in specs.split(",") if s.strip()]
    if user_specs and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # found from the working directory, like pipelines
    for spec in user_specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
            targets = [getattr(module, attr)] if attr else list(vars(module).values())
        except (ImportError, AttributeError) as exc:
            raise InvalidInput(f"cannot load processors {spec!r}: {exc}") from None
        except Exception as exc:  # user code raising at import is its fault, said in one line
            raise InvalidInput(f"cannot load processors {spec!r}: importing it raised {type(exc).__name__}") from None
        chosen = [t for t in targets if isinstance(t, ProcessorDefinition)]
        if attr and not chosen:
            raise InvalidInput(f"{spec!r} is not a processor (declare it with @processor)")
        found.extend(chosen)
    return ProcessorRegistry(found)
