"""``python -m bench [<name> [options]]``: run one benchmark, or all of them (no name, or ``all``)."""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from typing import Any

# name -> module exposing add_arguments(parser) and run(args)
BENCHMARKS = {
    "store": "bench.store",
    "runtime": "bench.runtime",
    "eventsourcing": "bench.eventsourcing_cmp",
    "fleet": "bench.fleet",
    "relay": "bench.relay",
    "peers": "bench.peers",
    "scaling": "bench.scaling",
    "stages": "bench.stages",
    "durability": "bench.durability",
    "verify": "bench.verify",
    "json_arrays": "bench.json_arrays",
    "serve": "bench.serve",
    "why": "bench.why",
    "asof": "bench.asof",
    "records": "bench.records",
    "idle": "bench.idle",
    "noop": "bench.noop",
    "ui": "bench.ui",
    "api": "bench.api",
    "warehouse": "bench.warehouse",
    "artifacts": "bench.artifacts",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(commands.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    every = commands.add_parser("all", help="every benchmark with its default options")
    every.add_argument("--quick", action="store_true", help="small sizes, for CI (< 1 min each)")
    args = parser.parse_args(argv)

    if args.benchmark in (None, "all"):  # every benchmark, its figures merged into bench/results.json
        from bench.results import run_all

        quick = getattr(args, "quick", False)
        runs = {name: functools.partial(_run_with_defaults, name, quick) for name in BENCHMARKS}
        return 1 if run_all(runs, quick=quick)["errors"] else 0
    importlib.import_module(BENCHMARKS[args.benchmark]).run(args)
    return 0


def _run_with_defaults(name: str, quick: bool) -> dict[str, Any]:
    module = importlib.import_module(BENCHMARKS[name])
    sub = argparse.ArgumentParser()
    module.add_arguments(sub)
    figures: dict[str, Any] = module.run(sub.parse_args(["--quick"] if quick else []))
    return figures


if __name__ == "__main__":
    sys.exit(main())
