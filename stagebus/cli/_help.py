"""Help text as a reader should see it, whatever the docstrings look like.

Docstrings are written for the code (reST markup, lines wrapped at 120 columns); typer shows them
as they are, so a paragraph breaks mid-sentence wherever the source wrapped it, and ``x`` shows
its backquotes. :func:`tidy` rewrites the help of every command once, before it is shown: each
paragraph becomes one line (the terminal wraps it), reST roles and literals become plain text,
boolean flags lose the ``<bool>`` type column typer 0.29 draws for them, and
arguments show as ``RUN_ID`` rather than ``{run_id}``.
"""

from __future__ import annotations

import re

from typer._click import Command, Context
from typer.core import TyperArgument, TyperGroup, TyperOption

_LITERAL = re.compile(r"``([^`]+)``")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_CODE = re.compile(r"`([^`]+)`")


def plain(text: str) -> str:
    """``text`` with one line per paragraph and no reST markup."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    joined = "\n\n".join(p for p in paragraphs if p)
    joined = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], joined)
    return _CODE.sub(r"\1", _LITERAL.sub(r"\1", joined))


def tidy(command: Command, help_option_names: list[str]) -> None:
    """Rewrite the help of ``command`` and everything under it, in place."""
    if command.help:
        command.help = plain(command.help)
    if command.short_help:
        command.short_help = plain(command.short_help)
    # The help option is made on first use and kept: make it now so it gets the same treatment.
    help_option = command.get_help_option(Context(command, help_option_names=help_option_names))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperOption):
            if param.help:
                param.help = plain(param.help)
            if param.is_flag and param.metavar is None:
                param.metavar = ""  # typer shows the metavar in place of its "<bool>"
        elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()  # RUN_ID, as usage lines spell arguments, not {run_id}
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            tidy(sub, help_option_names)
