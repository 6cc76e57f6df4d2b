"""``stagebus keys``: create, list and revoke API keys (facts in the log, hashes only)."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.api import keys as api_keys
from stagebus.api.settings import ApiSettings
from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.events.types import ApiKeyCreated, ApiKeyRevoked
from stagebus.projections.api_keys import read_key, read_keys

keys_app = typer.Typer(help="Create, list and revoke API keys for `stagebus api`.", no_args_is_help=True)


@keys_app.command("create")
def create(ctx: typer.Context,
           owner: Annotated[str, typer.Option("--owner", help="The tenant the key acts for.")],
           rate: Annotated[str | None, typer.Option("--rate", help="Rate limit, e.g. 100/minute.")] = None,
           fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Create a key and print its secret, once: only its SHA-256 is stored."""
    check_choice("format", fmt, FORMATS)
    api_keys.check_owner(owner)
    limit = api_keys.check_rate(rate or ApiSettings().default_rate)
    secret, key_id = api_keys.new_key(), api_keys.new_key_id()
    get_context(ctx).store().append_one(ApiKeyCreated(key_id=key_id, owner=owner, key_hash=api_keys.hash_key(secret),
                                                      rate=limit, prefix=secret[:api_keys.SHOWN]))
    if fmt == "json":
        print_json({"id": key_id, "owner": owner, "rate": limit, "key": secret})
        return
    typer.echo(f"key {key_id} for {owner} ({limit})")
    typer.echo(secret)
    typer.echo("store it now: it is not shown again", err=True)


@keys_app.command("list")
def list_keys(ctx: typer.Context,
              owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's keys.")] = None,
              fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Every key with its owner, rate and state; never a secret."""
    check_choice("format", fmt, FORMATS)
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    rows = [{"id": k.key_id, "owner": k.owner, "rate": k.rate, "key": f"{k.prefix}…", "created_at": k.created_at,
             "revoked_at": k.revoked_at, "status": "active" if k.active else "revoked"}
            for k in read_keys(projections.connection(), owner)]
    if fmt == "json":
        print_json(rows)
        return
    grid = table("id", "owner", "rate", "key", "status", "created_at")
    for row in rows:
        grid.add_row(row["id"], row["owner"], row["rate"], row["key"], row["status"], row["created_at"])
    stdout().print(grid)


@keys_app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (from keys list).")]) -> None:
    """Revoke a key: every API process refuses it from its next request on."""
    app = get_context(ctx)
    projections = app.projections()
    projections.catch_up()
    if read_key(projections.connection(), key_id) is None:
        raise InvalidInput(f"no key {key_id!r} (see `stagebus keys list`)")
    stored = app.store().append_one(ApiKeyRevoked(key_id=key_id)).stored
    typer.echo(f"key {key_id} revoked" if stored else f"key {key_id} was already revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
