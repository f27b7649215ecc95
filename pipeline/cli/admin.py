"""Commands for whoever administers the desk: its accounts, its intake clients, the server itself."""

from __future__ import annotations

import os
from typing import Any

import click

from pipeline import wiring
from pipeline.cli.common import CliError, configure_logging, settings


@click.command()
@click.option("--host", default=None, help="Default: ERASURE_DESK_HOST (127.0.0.1)")
@click.option("--port", type=int, default=None, help="Default: ERASURE_DESK_PORT (8640)")
def desk(host: str | None, port: int | None) -> None:
    """Serve the officer's desk and the HTTP intake (OpenAPI document at /openapi.json)."""
    import uvicorn

    current = settings()
    configure_logging(current)
    config = uvicorn.Config(wiring.desk_app(current), host=host or current.desk_host,
                            port=port or current.desk_port, log_level="warning", access_log=False)
    _quiet_server(uvicorn.Server)(config).run()


def _quiet_server(base: type[Any]) -> type[Any]:
    """uvicorn's server, its main loop turning once a second rather than ten times: the loop only
    keeps the Date header current (to the second) and notices a stop request, so an idle desk
    need not wake more often (a SIGTERM is seen within a second)."""

    class QuietServer(base):  # type: ignore[misc]
        async def main_loop(self) -> None:
            import asyncio

            ticks = 0  # uvicorn counts tenths of a second: its Date header moves at each tenth tick
            while not await self.on_tick(ticks):
                await asyncio.sleep(1.0)
                ticks = (ticks + 10) % 864000

    return QuietServer


@click.group()
def users() -> None:
    """Desk accounts: officers act on requests, viewers only look."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["officer", "viewer"]), required=True)
@click.option("--password-env", default=None, help="Read the password from this variable, not a prompt")
def users_add(name: str, role: str, password_env: str | None) -> None:
    """Create or replace a desk account (a replaced account's sessions end: everyone logs in again)."""
    from pipeline.codec import now_utc
    from pipeline.ledger.accounts import Access

    current = settings()
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise CliError(f"{password_env} is not set: put the new password in it")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        Access(wiring.ledger(current)).set_user(name, role, password, now_utc())  # type: ignore[arg-type]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"{role} {name} saved")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Delete a desk account and end its sessions at once."""
    from pipeline.ledger.accounts import Access

    if not Access(wiring.ledger(settings())).remove_user(name):
        raise CliError(f"no desk account {name}")
    click.echo(f"{name} removed; its sessions ended")


@click.group()
def clients() -> None:
    """HTTP intake clients (one bearer token each)."""


@clients.command("add")
@click.argument("name")
def clients_add(name: str) -> None:
    """Create a client and print its token (shown once; stored hashed)."""
    from pipeline.codec import now_utc
    from pipeline.ledger.accounts import Access

    click.echo(Access(wiring.ledger(settings())).add_client(name, now_utc()))


@clients.command("revoke")
@click.argument("name")
def clients_revoke(name: str) -> None:
    """Delete a client's token: its requests are refused (401) from now on."""
    from pipeline.ledger.accounts import Access

    if not Access(wiring.ledger(settings())).revoke_client(name):
        raise CliError(f"no intake client {name}")
    click.echo(f"client {name} revoked")


@click.group()
def notes() -> None:
    """Officers' free text (confirmation notes, extension reasons), kept apart from the hash chain."""


@notes.command("erase")
@click.argument("request_id")
def notes_erase(request_id: str) -> None:
    """Erase a request's notes and extension reason; the chain keeps their SHA-256 and still verifies."""
    from pipeline.ledger.actions import erase_notes

    count = erase_notes(wiring.ledger(settings()), request_id)
    click.echo(f"{count} note(s) of request {request_id} erased")


COMMANDS: list[click.Command] = [desk, users, clients, notes]
