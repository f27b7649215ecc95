"""Commands for the compliance officer: submit requests, follow them, confirm manual systems, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pipeline import wiring
from pipeline.cli.common import CliError, settings

if TYPE_CHECKING:
    from pipeline.ledger.checkpoints import LedgerKey, Verification
    from pipeline.ledger.views import PipelineFigures, RequestView


@click.command()
@click.option("--email", help="The person's e-mail address")
@click.option("--phone", help="The person's phone number")
@click.option("--user-id", help="The person's account id on the site")
@click.option("--request-id", help="UUID v4 idempotency key (default: a new one)")
@click.option("--received-at", help="When the person asked, ISO 8601 (default: now)")
def submit(email: str | None, phone: str | None, user_id: str | None, request_id: str | None,
           received_at: str | None) -> None:
    """Publish a deletion request; prints its request id."""
    from pipeline.codec import now_utc
    from pipeline.intake import IntakeClient, subject_identities
    from pipeline.signing import INTAKE
    from schemas.identity import InvalidIdentityError

    identities = {k: v for k, v in (("email", email), ("phone", phone), ("user_id", user_id)) if v}
    if not identities:
        raise CliError("give at least one of --email, --phone, --user-id")
    try:  # before anything is sealed or sent; the error names the option, never its value
        subject_identities(identities)
    except InvalidIdentityError as exc:
        option = "--" + exc.identity_type.replace("_", "-")
        raise CliError(f"{option}: expected {exc.rule}") from None
    current = settings()
    when = datetime.fromisoformat(received_at) if received_at else now_utc()
    if when.tzinfo is None:
        raise CliError("--received-at needs a time zone, e.g. 2026-11-26T10:00:00+01:00")
    bootstrap = wiring.bootstrap_servers(current)  # first: with no broker, that is the error to show
    with IntakeClient(bootstrap, wiring.pipeline_keys(current, need_private=False).intake_public,
                      wiring.signer(current, INTAKE), security=wiring.kafka_security(current)) as client:
        click.echo(client.submit(identities, when, request_id=request_id, channel="other"))


def _view_json(view: RequestView) -> dict[str, Any]:
    return {
        "request_id": view.request_id, "status": view.status, "subject_ref": view.subject_ref,
        "received_at": view.received_at.isoformat(), "due_at": view.due_at.isoformat(),
        "completed_at": view.completed_at.isoformat() if view.completed_at else None,
        "on_time": view.on_time, "deadline_flag": view.deadline_flag,
        "systems": [{"system": s.system, "status": s.status, "attempt": s.attempt,
                     "redrives": s.redrives, "evidence": s.evidence, "holds": s.holds, "error": s.error,
                     "updated_at": s.updated_at.isoformat()} for s in view.systems],
    }


def _echo_view(view: RequestView) -> None:
    from pipeline.evidence_text import evidence_parts

    flag = f" [{view.deadline_flag}]" if view.deadline_flag else ""
    click.echo(f"request {view.request_id}: {view.status}{flag}")
    click.echo(f"  received {view.received_at:%Y-%m-%d %H:%M} UTC, due {view.due_at:%Y-%m-%d %H:%M} UTC"
               + (f", completed {view.completed_at:%Y-%m-%d %H:%M:%S} UTC "
                  f"({'on time' if view.on_time else 'late'})" if view.completed_at else ""))
    for s in view.systems:
        detail = ""
        if s.evidence:
            detail = " " + ", ".join(evidence_parts(s.evidence, sep="="))
        if s.error:
            detail += f" error: {s.error.get('message')}"
        redriven = f" (re-driven {s.redrives} time{'s' if s.redrives != 1 else ''})" if s.redrives else ""
        click.echo(f"  {s.system:<20} {s.status:<10} attempt {s.attempt}{redriven}{detail}")
        for hold in s.holds:
            click.echo(f"    holds {hold['data_category']} until {hold['retain_until'][:10]}: "
                       f"{hold['legal_basis']} ({hold['citation']})")


LANE_COLUMNS = ("planned", "pending", "retrying", "manual", "failed", "erased", "not_found", "held")


def _echo_lanes(figures: PipelineFigures, now: datetime) -> None:
    """The figures `/metrics` reports, per system, as a table."""
    statuses = sorted({s for lane in figures.lanes for s in lane.by_status} - set(LANE_COLUMNS))
    columns = [*LANE_COLUMNS, *statuses]
    click.echo(f"{'system':<20}" + "".join(f"{c:>10}" for c in (*columns, "open", "overdue")))
    for lane in figures.lanes:
        cells = [lane.by_status.get(c, 0) for c in columns] + [lane.open, lane.overdue]
        click.echo(f"{lane.system:<20}" + "".join(f"{n:>10}" for n in cells))
    states = figures.requests_by_state
    line = f"requests: {states.get('in_progress', 0)} in progress, {figures.overdue_requests} overdue"
    if figures.oldest_unfinished_received_at is not None and figures.nearest_due_at is not None:
        age = now - figures.oldest_unfinished_received_at
        margin = (figures.nearest_due_at - now).total_seconds()
        line += (f"; oldest unfinished {age.days}d {age.seconds // 3600}h old; nearest deadline "
                 + (f"{-margin / 86400:.1f} days past" if margin < 0 else f"in {margin / 86400:.1f} days"))
    click.echo(line)
    click.echo("finished: " + ", ".join(f"{states[s]} {s}" for s in sorted(states) if s != "in_progress")
               + f"; ledger chain: {figures.chain_length} events")


@click.command()
@click.argument("request_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--lanes", is_flag=True, help="Instead of one request: each system's counts (as /metrics)")
def status(request_id: str | None, as_json: bool, lanes: bool) -> None:
    """Per-system outcomes and the deadline of one request; with --lanes, every system's counts."""
    from pipeline.ledger.views import note_text

    # Only the ledger's read side: the writers' parts (state machine, event contracts, pydantic models,
    # key store) are not imported, so the command answers in a fraction of a second.
    views = wiring.ledger_views(settings())
    now = datetime.now(UTC)  # pipeline.codec's clock, without importing the event contracts it encodes
    if lanes:
        _echo_lanes(views.figures(now), now)
        return
    if request_id is None:
        raise CliError("give a REQUEST_ID, or --lanes")
    view = views.request(request_id, now)
    if view is None:
        raise CliError(f"no request {request_id} in the ledger (yet): it may still be in the broker")
    if as_json:
        click.echo(json.dumps(_view_json(view), indent=2))
        return
    _echo_view(view)
    notes = views.notes(request_id)  # officers' texts live apart from the chain, until erased
    for event in views.events(request_id):
        if event.kind in ("release_requested", "released", "replayed"):
            click.echo(f"  {event.recorded_at:%Y-%m-%d %H:%M} {event.system}: {event.kind.replace('_', ' ')}")
        elif event.kind in ("manual_confirmed", "deadline_extended", "refused"):
            text = note_text(json.loads(event.payload), notes)
            click.echo(f"  {event.recorded_at:%Y-%m-%d %H:%M} {event.system or 'request'}: "
                       f"{event.kind.replace('_', ' ')}" + (f": {text}" if text else ""))


@click.command("list")
@click.option("--status", "status_filter", help="Only requests in this status")
@click.option("--overdue", is_flag=True, help="Only unfinished requests past their deadline")
@click.option("--json", "as_json", is_flag=True)
def list_requests(status_filter: str | None, overdue: bool, as_json: bool) -> None:
    """Requests, newest first."""
    views = wiring.ledger_views(settings()).list_requests(datetime.now(UTC), status_filter, overdue)
    if as_json:
        click.echo(json.dumps([_view_json(v) for v in views], indent=2))
        return
    for v in views:
        click.echo(f"{v.request_id}  {v.status:<22} received {v.received_at:%Y-%m-%d} "
                   f"due {v.due_at:%Y-%m-%d} {v.deadline_flag or ''}")


@click.command()
@click.option("--system", help="Only this system's holds")
@click.option("--json", "as_json", is_flag=True)
def holds(system: str | None, as_json: bool) -> None:
    """Active legal holds, by system and end date."""
    rows = wiring.ledger_views(settings()).active_holds(system)
    if as_json:
        click.echo(json.dumps([{
            "request_id": r.request_id, "system": r.system, "data_category": r.data_category,
            "legal_basis": r.legal_basis, "citation": r.citation,
            "retain_until": r.retain_until.isoformat(),
            "release_requested_at": r.release_requested_at.isoformat()
            if r.release_requested_at else None} for r in rows], indent=2))
        return
    if not rows:
        click.echo("no active holds")
    for r in rows:
        click.echo(f"{r.system:<16} {r.data_category:<18} until {r.retain_until:%Y-%m-%d}  "
                   f"{r.request_id}  {r.citation}")


@click.command()
@click.argument("request_id")
@click.argument("system")
@click.option("--by", "author", required=True, help="Who confirms (recorded in the ledger)")
@click.option("--outcome", type=click.Choice(["erased", "not_found", "held"]), required=True)
@click.option("--category", help="With --outcome held: the data category kept")
@click.option("--note", help="A reference: ticket, e-mail, letter")
def confirm(request_id: str, system: str, author: str, outcome: str, category: str | None,
            note: str | None) -> None:
    """Confirm what a system with no API did (attributed and timestamped)."""
    from pipeline.codec import now_utc
    from pipeline.ledger.actions import ActionError, confirm_manual

    current = settings()
    policy = (wiring.retention_policy(current, wiring.systems_register(current))
              if outcome == "held" else None)
    try:
        status = confirm_manual(wiring.ledger(current), request_id, system, outcome,  # type: ignore[arg-type]
                                author, now_utc(), policy, category, note)
    except ActionError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"{system} confirmed {outcome} by {author}; request {request_id} is {status}")


@click.group()
def ledger() -> None:
    """The ledger's integrity."""


def _ledger_key() -> LedgerKey | None:
    """The ledger's signing key, when this machine holds one (`erasure ledger key`)."""
    from pipeline.ledger.checkpoints import LEDGER_KEY_FILE, LedgerKey

    try:
        return LedgerKey.load(wiring.signing_keys_dir(settings()) / LEDGER_KEY_FILE)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _verified(result: Verification) -> str:
    if result.mode == "full":
        line = (f"ledger chain intact: {result.checked:,} events verified from the first in "
                f"{result.elapsed_s:.1f} s ({result.events_per_s:,.0f} events/s)")
    elif result.checked:
        line = (f"ledger chain intact: {result.checked:,} events after the checkpoint at position "
                f"{result.from_position:,} verified in {result.elapsed_s:.2f} s")
    else:
        line = ("ledger chain intact: nothing recorded after the checkpoint at position "
                f"{result.from_position:,}")
    if result.checkpoint is not None:
        line += f"; checkpoint recorded at position {result.checkpoint:,}"
    return line


@ledger.command("verify")
@click.option("--full", is_flag=True,
              help="Verify every event from the first, not only those after the last checkpoint; "
                   "reports the rate")
def ledger_verify(full: bool) -> None:
    """Check the hash chain of the event log; names the first broken link.

    Verifies what was recorded after the last checkpoint (the position and hash a previous run found
    intact, signed with the ledger key when this machine has one), then records a new checkpoint.
    """
    from pipeline.codec import now_utc
    from pipeline.ledger.checkpoints import verify_ledger

    key = _ledger_key()
    the_ledger = wiring.ledger(settings())
    result = verify_ledger(the_ledger.engine, the_ledger.writer, now_utc(), full=full, key=key)
    if result.warning:
        click.echo(f"warning: {result.warning}; the events themselves decide, verified below", err=True)
    if result.problem is not None:
        hint = "" if full else " (`erasure ledger verify --full` checks every event from the first)"
        raise CliError(result.problem + hint)
    if result.broken_at is not None:
        raise CliError(f"ledger event at chain position {result.broken_at} does not follow from the one "
                       "before: the event log was altered")
    if result.note:
        click.echo(f"note: {result.note}", err=True)
    click.echo(_verified(result))


@ledger.command("key")
def ledger_key() -> None:
    """Create the ledger's signing key: verification checkpoints are signed with it from then on."""
    from pipeline.ledger.checkpoints import LEDGER_KEY_FILE, LedgerKey

    path = wiring.signing_keys_dir(settings()) / LEDGER_KEY_FILE
    try:
        LedgerKey.create(path)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"ledger key written to {path} (0600): keep it off the database's machine and backups; "
               "`erasure ledger verify` signs its checkpoints with it and checks them against it")


COMMANDS: list[click.Command] = [submit, status, list_requests, holds, confirm, ledger]
