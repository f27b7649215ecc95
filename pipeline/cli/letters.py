"""Commands for the letters the person is owed: render one (`erasure letter`), refuse a request
(`erasure refuse`, whose letter then says why)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from pipeline import wiring
from pipeline.cli.common import CliError, LazyChoice, settings

if TYPE_CHECKING:
    from pipeline.letters import Format, Lang, LetterKind, LetterWriter
    from pipeline.settings import Settings


def _langs() -> tuple[str, ...]:
    from pipeline.letters import LANGS

    return LANGS


def _kinds() -> tuple[str, ...]:
    from pipeline.letters import LETTER_KINDS

    return LETTER_KINDS


def letter_writer(current: Settings) -> LetterWriter:
    """With the register's names and the policy's words when there is a register (as the desk)."""
    from pipeline.letters import LetterWriter

    register, policy = None, None
    if wiring.systems_file(current).exists():
        register = wiring.systems_register(current)
        policy = wiring.retention_policy(current, register)
    return LetterWriter.from_settings(current, register, policy)


@click.command()
@click.argument("request_id")
@click.option("--lang", type=LazyChoice(_langs), required=True, help="The person's language")
@click.option("--format", "fmt", type=click.Choice(["text", "html", "pdf"]), default="text",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file")
@click.option("--kind", type=LazyChoice(_kinds),
              help="Which letter (default: the one the request's state calls for)")
@click.option("--recipients", is_flag=True, help="List the recipients informed (Art. 19: on request)")
def letter(request_id: str, lang: str, fmt: str, out: Path | None, kind: str | None,
           recipients: bool) -> None:
    """The letter to the person about a request, rendered now from the ledger (never stored)."""
    from pipeline.codec import now_utc
    from pipeline.letters import LetterError, PdfError

    current = settings()
    writer = letter_writer(current)
    if fmt == "pdf" and out is None and sys.stdout.isatty():
        raise CliError("a PDF is not for a terminal: give --out FILE (or redirect the output)")
    try:
        rendered = writer.letter(wiring.ledger(current), request_id, cast("Lang", lang), now_utc(),
                                 cast("LetterKind | None", kind), recipients)
        document = writer.document(rendered, cast("Format", fmt))
    except (LetterError, PdfError) as exc:
        raise CliError(str(exc)) from None
    if out is not None:
        out.write_bytes(document)
        click.echo(f"{fmt} letter for request {request_id} written to {out}", err=True)
    else:
        click.get_binary_stream("stdout").write(document)


@click.command()
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (Art. 12(4); the person reads it: no personal data)")
@click.option("--by", "author", required=True, help="Who decides (recorded in the ledger)")
def refuse(request_id: str, reason: str, author: str) -> None:
    """Refuse a request (only before anything was erased); the person's letter gives the reason."""
    from pipeline.codec import now_utc
    from pipeline.ledger import actions

    try:
        actions.refuse(wiring.ledger(settings()), request_id, reason, author, now_utc())
    except actions.ActionError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"request {request_id} refused by {author}; its letter: "
               f"erasure letter {request_id} --lang fr|en")


COMMANDS: list[click.Command] = [letter, refuse]
