"""The site's own retention, run by operators: `erasure sweep` (erasure on schedule under the
retention rules of systems.yaml) and `erasure replay` (erase again after a store is restored)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import click

from pipeline import wiring
from pipeline.cli.common import CliError, settings

if TYPE_CHECKING:
    from pipeline.ledger.sweeps import SweepLog
    from pipeline.replay import ReplayReport
    from pipeline.settings import Settings
    from pipeline.sweep.plan import RulePlan


def _hmac_key(current: Settings, purpose: str) -> bytes:
    key = wiring.pipeline_keys(current, need_private=False).subject_ref_hmac
    if key is None:
        raise CliError(f"{purpose} needs the subject_ref key: no subject_ref.key in {current.keys_dir} and "
                       "ERASURE_SUBJECT_REF_KEY is not set (the router's key: copy it, never make a new one)")
    return key


@click.command()
@click.option("--dry-run", is_flag=True, help="Count the people each rule covers; submit nothing")
@click.option("--rule", "rule_name", help="Only this rule (its name in systems.yaml)")
@click.option("--rate-per-s", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Requests submitted per second at most")
def sweep(dry_run: bool, rule_name: str | None, rate_per_s: float) -> None:
    """Erase on schedule the people the site's retention rules cover (storage limitation).

    Each rule's people get one erasure request each (channel `retention`), through the same
    pipeline as everyone's, holds included. A second run submits nobody twice.
    """
    from pipeline.codec import now_utc
    from pipeline.sweep.finder import SweepError
    from pipeline.sweep.run import plan_sweeps

    current = settings()
    register = wiring.systems_register(current)
    key = _hmac_key(current, "a sweep")
    ledger = wiring.ledger(current)
    try:
        plans = plan_sweeps(register, key, ledger.sweeps, now_utc(), rule_name)
    except SweepError as exc:
        raise CliError(str(exc)) from None
    if not plans:
        click.echo("no retention sweep declared in the register (systems[].retention_sweeps)")
        return
    for plan in plans:
        unusable = (f"; {plan.unusable_rows} row(s) without a valid identity left"
                    if plan.unusable_rows else "")
        click.echo(f"{plan.system} {plan.rule.name} ({plan.rule.description}): {len(plan.people)} "
                   f"people, {len(plan.already_submitted)} submitted before, {len(plan.to_submit)} "
                   f"to submit{unusable}")
    total = sum(len(p.to_submit) for p in plans)
    if dry_run or not total:
        click.echo("dry run: nothing submitted" if dry_run else "nothing to submit")
        return
    try:
        submitted = _submit(current, plans, rate_per_s, ledger.sweeps, total)
    except SweepError as exc:
        raise CliError(f"{exc}; the requests submitted before are recorded: run `erasure sweep` again "
                       "to submit the rest") from None
    click.echo(f"submitted {submitted} request(s)")


def _submit(current: Settings, plans: list[RulePlan], rate_per_s: float, sweeps: SweepLog, total: int) -> int:
    from pipeline.intake import IntakeClient
    from pipeline.signing import SWEEP
    from pipeline.sweep.submit import SweepSubmitter

    bootstrap = wiring.bootstrap_servers(current)
    public_key = wiring.pipeline_keys(current, need_private=False).intake_public
    submitted = 0
    sweep_signer = wiring.signer(current, SWEEP)
    with IntakeClient(bootstrap, public_key, sweep_signer, security=wiring.kafka_security(current)) as client:
        submitter = SweepSubmitter(client, sweeps, rate_per_s)
        with click.progressbar(length=total, label="submitting", show_pos=True, show_eta=True) as bar:
            for plan in plans:
                submitted += submitter.submit(plan, bar.update)
    return submitted


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("expected an ISO 8601 time, e.g. 2026-12-01T03:00:00+01:00") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-12-01T03:00:00+01:00")
    return moment


@click.command()
@click.option("--system", "system_id", required=True, help="The restored system (its id in systems.yaml)")
@click.option("--since", "since_text", required=True,
              help="When the restored backup was taken, ISO 8601 with a time zone")
@click.option("--dry-run", is_flag=True, help="Count the people found again; erase nothing")
def replay(system_id: str, since_text: str, dry_run: bool) -> None:
    """Erase again, in a restored store, the people erased since its backup was taken.

    Works after their data keys are destroyed; holds are respected; each person erased again is
    recorded in their request's history.
    """
    from connectors.base import ConfigError
    from pipeline.codec import now_utc
    from pipeline.replay import replay as run_replay
    from pipeline.sweep.rules import parse_period

    since = _since(since_text)
    current = settings()
    register = wiring.systems_register(current)
    try:
        entry = register.get(system_id)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    now = now_utc()
    if entry.backup_retention is None:
        click.echo(f"warning: {system_id} declares no backup_retention: the ledger keeps no digests of "
                   "the people erased from it since then, so they cannot be found", err=True)
    elif since < now - parse_period(entry.backup_retention):
        click.echo(f"warning: this backup is older than {system_id}'s backup_retention "
                   f"({entry.backup_retention}): people erased long ago may no longer be known", err=True)
    policy = wiring.retention_policy(current, register)
    key = _hmac_key(current, "a replay")
    store = wiring.build_connectors(current, register, [system_id])[system_id]
    if not hasattr(store, "identity_values"):
        raise CliError(f"{system_id} (connector type {entry.connector.type!r}) cannot list the people it "
                       "holds: only sql stores can be replayed")
    try:
        report = run_replay(store, wiring.ledger(current), key, policy, since, now,  # type: ignore[arg-type]
                            uuid.uuid4().hex, dry_run)
    finally:
        store.close()
    _echo_report(system_id, since, report, dry_run)


def _echo_report(system_id: str, since: datetime, report: ReplayReport, dry_run: bool) -> None:
    click.echo(f"{system_id}: {report.erased_people} people erased since {since.isoformat()} per the ledger; "
               f"{len(report.found)} found again in the store")
    if dry_run:
        click.echo("dry run: nothing erased")
        return
    for record in report.records:
        detail = ", ".join(f"held {h['data_category']} until {h['retain_until'][:10]}"
                           for h in record.payload.get("holds", []))
        rows = record.payload.get("records_affected")
        counted = f", {rows} row(s)" if rows is not None else ""
        click.echo(f"  {record.request_id}: {record.status}{counted}" + (f"; {detail}" if detail else ""))
    click.echo(f"held rows whose retention had ended, deleted: {report.purged_ended_holds}")
    click.echo(f"recorded in the ledger ({len(report.records)} `replayed` event(s))")
    if report.failed:
        raise CliError(f"{len(report.failed)} erasure(s) failed: see `erasure status` of those requests and "
                       "run the replay again")


COMMANDS = [sweep, replay]
