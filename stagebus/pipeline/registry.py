"""Loading pipelines by name: ``module:attribute`` specs, as ``STAGEBUS_PIPELINES`` gives them.

The reference pipeline is one such spec, always loaded first. Loading by name (the way
dramatiq finds actors) lets a process builder in ``actors`` assemble every pipeline without
importing the reference stages, which sit above it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from stagebus.errors import InvalidInput
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.settings import Settings

REFERENCE_SPEC = "stagebus.stages:reference_pipeline"
# Pipelines made on demand from their name: the HTTP service's ``api-<pipeline id>``. Each spec
# names a callable ``(registry, settings) -> registry`` that adds them. Named, not imported, so
# fleet processes (``actors``) resolve an API batch's run without importing the service above them.
FAMILY_SPECS = ("stagebus.api.batches:with_batch_pipelines",)
Extension = Callable[[PipelineRegistry, Settings], PipelineRegistry]


def load_pipelines(specs: str = "") -> PipelineRegistry:
    """The reference pipeline plus every ``module:attribute`` in ``specs`` (comma-separated),
    each a :class:`Pipeline` (or a callable returning one). Raises :class:`InvalidInput`."""
    registry = PipelineRegistry([load_pipeline(REFERENCE_SPEC)])
    user_specs = [s.strip() for s in specs.split(",") if s.strip()]
    if user_specs and "" not in sys.path and os.getcwd() not in sys.path:
        # User modules are found from the working directory, as ``python -m`` and the
        # ``dramatiq`` command find them; a console script does not put it on the path itself.
        sys.path.insert(0, os.getcwd())
    for spec in user_specs:
        registry.add(load_pipeline(spec))
    return registry


def fleet_pipelines(settings: Settings) -> PipelineRegistry:
    """What a fleet process (relay, worker) runs: :func:`load_pipelines` of ``settings.pipelines``
    plus every family of :data:`FAMILY_SPECS`, so runs the HTTP service opened are known too."""
    registry = load_pipelines(settings.pipelines)
    for spec in FAMILY_SPECS:
        module_name, _, attr = spec.partition(":")
        extend: Extension = getattr(importlib.import_module(module_name), attr)
        registry = extend(registry, settings)
    return registry


def load_pipeline(spec: str) -> Pipeline:
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr or "pipeline")
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"cannot load pipeline {spec!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # user code: a raise or sys.exit() at import is its fault
        raise InvalidInput(f"cannot load pipeline {spec!r}: importing it raised {_described(exc)}") from None
    try:
        pipeline = target() if callable(target) and not isinstance(target, Pipeline) else target
    except (Exception, SystemExit) as exc:
        raise InvalidInput(f"cannot load pipeline {spec!r}: building it raised {_described(exc)}") from None
    if not isinstance(pipeline, Pipeline):
        raise InvalidInput(f"{spec!r} is not a stagebus Pipeline")
    return pipeline


def _described(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
