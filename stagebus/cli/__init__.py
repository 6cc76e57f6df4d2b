"""The ``stagebus`` command.

Each command lives in its own module with a ``register(app)`` function; :data:`COMMANDS` names
each command's module, in help order. A module is imported only when one of its commands runs (or
help lists them all), so that a command pays at start-up for what it uses, not for every other
command's imports (the HTTP service's, the warehouse's, the inspector's). Errors are one line on
stderr, ``stagebus: error: …``, never a traceback: exit 2 for bad input (usage errors and
:class:`~stagebus.errors.InvalidInput`), 1 for anything else that failed.
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer import _click as click
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from stagebus.cli._context import AppContext, make_settings
from stagebus.cli._help import tidy
from stagebus.errors import InvalidInput, StagebusError

# Command -> the module of this package whose ``register(app)`` adds it, in help order. A module
# that is not there (yet) is skipped.
COMMANDS = {"publish": "publish", "run": "run", "runs": "runs", "why": "why", "demo": "demo", "state": "state",
            "manifest": "manifest", "rejects": "rejects", "export": "export", "query": "query", "log": "log",
            "replay": "replay", "pipeline": "pipeline", "gc": "gc", "artifacts": "artifacts", "relay": "fleet",
            "worker": "fleet", "ui": "ui", "api": "api", "keys": "keys", "load": "load"}

HELP_OPTION_NAMES = ["-h", "--help"]

_logger = logging.getLogger("stagebus.cli")  # not "log": the package has a log submodule


def fail(message: str, code: int) -> int:
    text = " ".join(str(message).split()) or "failed"
    typer.echo(f"stagebus: error: {text}", err=True)
    return code


class OneLineErrors(TyperGroup):
    """The root group: turns every failure into one line on stderr and an exit code."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        tidy(self, HELP_OPTION_NAMES)
        try:
            _check_utf8(sys.argv[1:] if args is None else args)
            code = super().main(args=args, prog_name=prog_name or "stagebus", complete_var=complete_var,
                                standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
            code = code if isinstance(code, int) else 0
        except click_exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message().rstrip() or "", nl=bool(exc.format_message().strip()))
            code = 2
        except click_exceptions.UsageError as exc:
            code = fail(exc.format_message(), 2)
        except click_exceptions.ClickException as exc:
            code = fail(exc.format_message(), exc.exit_code)
        except typer.Abort:
            code = fail("aborted", 1)
        except InvalidInput as exc:
            code = fail(str(exc), 2)
        except StagebusError as exc:
            code = fail(str(exc), 1)
        except sqlite3.Error as exc:  # a backend that did not translate its own error
            _logger.debug("sqlite error", exc_info=True)
            code = fail(f"sqlite: {exc}", 1)
        except KeyboardInterrupt:
            code = fail("interrupted", 130)
        except Exception as exc:  # a bug: still one line for the user, the trace for --log-level DEBUG
            _logger.debug("unexpected error", exc_info=True)
            code = fail(f"internal error: {type(exc).__name__}: {exc} (run with --log-level DEBUG for details)", 1)
        if standalone_mode:
            sys.exit(code)
        return code

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self._load(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def _load(self, module_name: str) -> None:
        """Import one command module and add what its ``register`` adds, help tidied."""
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module_name}":
                raise  # the module is there but something it imports is not: a real error
            return
        commands = typer.Typer()
        module.register(commands)
        for name, command in typer.main.get_group(commands).commands.items():
            tidy(command, HELP_OPTION_NAMES)
            self.add_command(command, name)


def _check_utf8(args: Sequence[str]) -> None:
    """Refuse an argument that is not UTF-8 (Python carries its bytes as surrogates): names,
    paths and URLs are stored and printed as UTF-8."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InvalidInput(f"argument {shown!r} is not valid UTF-8") from None


app = typer.Typer(
    cls=OneLineErrors,
    name="stagebus",
    help="Event-sourced pipeline orchestrator: publish partitions, run stages, inspect state.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": HELP_OPTION_NAMES},
)


def _print_version(value: bool) -> None:
    if value:
        from stagebus import __version__

        typer.echo(f"stagebus {__version__}")
        raise typer.Exit()


@app.callback()
def configure(
    ctx: typer.Context,
    home: Annotated[str | None, typer.Option("--home", envvar="STAGEBUS_HOME", show_default="./.stagebus",
                                             help="Directory holding the log, projections and artifacts.")] = None,
    store: Annotated[str | None, typer.Option("--store", envvar="STAGEBUS_STORE", show_default="sqlite in home",
                                              help="Event log URL: sqlite:///PATH, redis://…, rediss://…")] = None,
    artifacts: Annotated[str | None, typer.Option("--artifacts", envvar="STAGEBUS_ARTIFACTS",
                                                  show_default="artifacts in home",
                                                  help="Artifact store: a directory or s3://BUCKET/PREFIX "
                                                       "(endpoint, region, credentials: the AWS variables or "
                                                       "profile).")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", envvar="STAGEBUS_LOG_LEVEL",
                                                  show_default="INFO", help="DEBUG, INFO, WARNING or ERROR.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Read settings once, at the edge; commands open state through the context."""
    settings = make_settings(home, store, log_level, artifacts)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stagebus").setLevel(settings.log_level)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # S3 artifacts: which credential source, per process
    context = AppContext(settings)
    ctx.obj = context
    ctx.call_on_close(context.close)


def main() -> None:
    """Console script entry point."""
    typer.main.get_command(app).main(prog_name="stagebus")
