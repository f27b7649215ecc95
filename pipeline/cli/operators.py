"""Commands for whoever runs the pipeline: its processes, topics, keys, schemas, ledger schema, fakes."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from pipeline import liveness, wiring
from pipeline.cli.common import CliError, configure_logging, settings

if TYPE_CHECKING:
    from pipeline.register import SystemsRegister
    from pipeline.settings import Settings
    from pipeline.worker.runtime import ConnectorWorker

log = logging.getLogger(__name__)


# -- keys, topics, schemas, the ledger's schema -------------------------------------------
@click.group()
def keys() -> None:
    """Intake key pair, subject_ref key, the KEK wrapping the ledger's data keys, signing keys."""


def _configured_register(current: Settings) -> SystemsRegister | None:
    """The systems register when one is configured: each system's connector gets a signing key."""
    if current.systems_file is None and not wiring.systems_file(current).exists():
        return None
    return wiring.systems_register(current)


@keys.command("init")
@click.option("--force", is_flag=True,
              help="Replace the intake keys (old requests become unreadable); rotate signing keys instead")
def keys_init(force: bool) -> None:
    """Create the intake key pair and the missing signing keys with their register.

    Publishers need the intake public key it prints and their own signing key. Signing keys: the
    router, the desk, the intake client (`intake`), the sweeps (`sweep`), and one connector per
    system of the register when one is configured.
    """
    from pipeline.crypto import init_keys

    current = settings()
    path = init_keys(current.keys_dir, overwrite=force)
    click.echo(f"intake public key ({path}): {path.read_text().strip()}")
    created = wiring.ensure_signing_keys(current, _configured_register(current))
    click.echo(f"signing keys created: {', '.join(created) or 'none (all present)'}; private keys in "
               f"{wiring.signing_keys_dir(current)}, register {wiring.signers_file(current)}")


@keys.command("rotate")
@click.argument("signer")
@click.option("--grace-s", type=float, default=None,
              help="How long the old key stays valid (default ERASURE_SIGNING_KEY_GRACE_S)")
def keys_rotate(signer: str, grace_s: float | None) -> None:
    """Give SIGNER (router, desk, intake, sweep, connector:SYSTEM) a new signing key; restart it.

    The old public key stays in the register, accepted for the grace period, so records signed
    before the restart still verify; verifiers re-read the register by themselves.
    """
    from pipeline.signing_keys import RegisterError, rotate

    current = settings()
    grace = current.signing_key_grace_s if grace_s is None else grace_s
    try:
        entry = rotate(wiring.signers_file(current), wiring.signing_keys_dir(current), signer, grace)
    except RegisterError as exc:
        raise CliError(str(exc)) from None
    old = [k.not_after.isoformat() for k in entry.keys if k.not_after is not None]
    click.echo(f"{signer}: new key in {wiring.signing_keys_dir(current)}; previous key(s) accepted until "
               f"{', '.join(old) or 'now'}. Restart {signer} to sign with the new key.")


@keys.command("rotate-kek")
def keys_rotate_kek() -> None:
    """Put a new KEK first in <keys dir>/kek (older ones kept to unwrap); then run `keys rewrap`."""
    from pipeline.crypto import rotate_kek

    current = settings()
    if current.kek:
        raise CliError("ERASURE_KEK is set: put a new base64 32-byte key first in it (comma, then the "
                       "old ones), restart, run `erasure keys rewrap`, then drop the old ones")
    click.echo(f"new KEK {rotate_kek(current.keys_dir)} first in {current.keys_dir / 'kek'}; "
               "now run `erasure keys rewrap`, then delete the older lines to shred their copies")


@keys.command("rewrap")
def keys_rewrap() -> None:
    """Wrap every live data key with the newest KEK (also wraps clear keys of older ledgers)."""
    current = settings()
    moved = wiring.ledger(current, data_keys=True).rewrap_data_keys()
    click.echo(f"{moved} data keys re-wrapped with KEK {wiring.key_wrapper(current).key_id}")


def create_topics(current: Settings, register: SystemsRegister, bootstrap: str) -> None:
    from pipeline.kafka_clients import ensure_topics
    from pipeline.streaming import topics

    ensure_topics(bootstrap, topics.all_topics(register.ids), current.topic_partitions,
                  current.topic_replication_factor, topics.topic_configs(current.requests_retention_s),
                  security=wiring.kafka_security(current))


@click.command("topics")
def topics_create() -> None:
    """Create the pipeline's topics (idempotent)."""
    current = settings()
    create_topics(current, wiring.systems_register(current), wiring.bootstrap_servers(current))
    click.echo("topics ready")


@click.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
def schemas_export() -> None:
    """Rewrite schemas/*.schema.json from the models."""
    from schemas.export import export_all

    for path in export_all():
        click.echo(str(path))


@click.group()
def db() -> None:
    """The ledger's database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the ledger's schema up to date (idempotent)."""
    click.echo(f"ledger schema at revision {wiring.prepare_ledger(settings())} (newest)")


# -- components --------------------------------------------------------------------
@click.command()
def worker() -> None:
    """Run the router and the aggregator (faust)."""
    import faust

    current = settings()
    configure_logging(current)
    app = wiring.stream_app(current)
    faust.Worker(app, loglevel=current.log_level.upper(), quiet=True).execute_from_commandline()


@click.command()
@click.argument("systems", nargs=-1, required=True)
def connector(systems: tuple[str, ...]) -> None:
    """Run the connector workers of one or more SYSTEMS (a thread each).

    Each lane beats its own entry of the heartbeat file, so a supervisor sees which one stalls.
    A lane that ends on an error stops the others and the process exits with 1, for its
    supervisor to start it again (a single lane dying unseen in a shared process would stall).
    """
    from pipeline.worker.claims import LaneClaimed, claim_lanes

    current = settings()
    configure_logging(current)
    try:  # held until this process exits: a second sole owner of a system here is refused
        claims = claim_lanes(current.home_dir / "run", list(systems), current.connector_sole_owner)
    except LaneClaimed as exc:
        raise CliError(str(exc)) from None
    # Every lane is in the heartbeat file from the start: one that never turns is seen as well.
    liveness.expect_loops(current.heartbeat_file, list(systems))
    runners = wiring.connector_workers(current, list(systems))
    stopping = threading.Event()
    ended: queue.SimpleQueue[str] = queue.SimpleQueue()

    def stop(*_: object) -> None:
        stopping.set()
        for runner in runners:
            runner.stop()

    def lane(runner: ConnectorWorker) -> None:
        try:
            runner.run()
        finally:
            ended.put(runner.system)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for runner in runners:
        threading.Thread(target=lane, args=(runner,), name=f"connector-{runner.system}").start()
    failed: list[str] = []
    for _ in runners:
        while True:
            try:  # a timeout, so that the signal handlers run in this thread
                system = ended.get(timeout=5.0)
                break
            except queue.Empty:
                continue
        if not stopping.is_set():
            failed.append(system)
            log.error("connector %s: its lane ended unexpectedly; stopping the other lanes of this process",
                      system)
            stop()
    claims.release()
    if failed:
        raise CliError(f"connector {failed[0]}: its lane ended on an error (above); exiting so that the "
                       "supervisor starts every lane of this process again")


@click.group()
def systems() -> None:
    """The systems register."""


@systems.command("check")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per system instead of the table")
@click.option("--strict", is_flag=True, help="Also fail when a permission could not be verified")
def systems_check(as_json: bool, strict: bool) -> None:
    """Try each system's credentials and the permissions erasing needs, erasing nothing.

    Prints, per system: ok, UNVERIFIED (a permission shows only when erasing) or FAILED, the missing
    scopes and notes, then what to do (the scope to grant, the variable holding the credential).
    """
    from pipeline.cli import systems_check as check

    current = settings()
    rows = check.check_all(current, wiring.systems_register(current))
    for line in (check.as_json(rows) if as_json else check.table(rows)):
        click.echo(line)
    failed = [r.system for r in rows if r.report.result == "FAILED"
              or (strict and r.report.result == "UNVERIFIED")]
    if failed:
        raise CliError(f"{len(failed)} system(s) failed the check ({', '.join(failed)}): "
                       "see what to do above, then run `erasure systems check` again")


# -- fakes and the embedded stack ------------------------------------------------------
@click.command()
@click.argument("processor", type=click.Choice(["brevo"]))
@click.option("--port", type=int, default=0)
@click.option("--api-key-env", default="BREVO_API_KEY", help="Variable holding the accepted key")
def fake(processor: str, port: int, api_key_env: str) -> None:
    """Serve a fake of a processor's API (tests and demos)."""
    from pipeline.devstack.fake_brevo import FakeBrevo

    key = os.environ.get(api_key_env)
    if not key:
        raise CliError(f"set {api_key_env} to the API key the fake should accept")
    server = FakeBrevo({key})
    click.echo(f"fake {processor} on {server.start('127.0.0.1', port)}", err=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.stop()


def _start_demo(current: Settings, env: dict[str, str], cleanup: ExitStack) -> Settings:
    """Serve the demo's fake Brevo and write its register; the settings that point at them."""
    from pipeline.devstack.demo import start_demo

    brevo, demo_env = start_demo(current.home_dir)
    cleanup.callback(brevo.stop)
    env.update(demo_env)
    os.environ.update(demo_env)
    return settings()


def _announce(current: Settings, bootstrap: str, broker_kind: str, register: SystemsRegister,
              demo: bool) -> None:
    click.echo(f"erasure pipeline up: broker {bootstrap} ({broker_kind}), "
               f"ledger {current.ledger_url}, systems {', '.join(register.ids)}", err=True)
    if not demo:
        return
    from pipeline.devstack.demo import demo_accounts

    click.echo("demo: try `erasure submit --email alice.martin@example.org` (held, not found and "
               "erased side by side), then `erasure status ID` and `erasure holds`", err=True)
    demo_accounts(wiring.ledger(current), current.home_dir)
    click.echo(f"desk: http://{current.desk_host}:{current.desk_port}/ (user demo-officer, "
               f"password in {current.home_dir / 'demo-officer.password'}); "
               f"intake token in {current.home_dir / 'demo-intake.token'}", err=True)


@click.command()
@click.option("--demo/--no-demo", default=None,
              help="Use the demo register (fake Brevo, SQLite site db); default when no "
                   "ERASURE_SYSTEMS_FILE is set")
@click.option("--connector-processes", type=click.Choice(["one", "per-system"]), default=None,
              help="All connector lanes in one process, a thread each, or a process per system "
                   "(default ERASURE_UP_CONNECTOR_PROCESSES, else one)")
def up(demo: bool | None, connector_processes: str | None) -> None:
    """Everything on one machine: broker, router/aggregator, the connector lanes, the desk.

    The connector lanes share one process, a thread each (or run a process per system with
    `--connector-processes per-system`). Each child that exits, or one of whose loops (a lane)
    stops making progress while it has work (ERASURE_SUPERVISOR_STALL_S), is restarted, with
    every lane it hosts.
    """
    from pipeline.crypto import init_keys
    from pipeline.devstack.broker import BrokerKeeper, find_or_start
    from pipeline.devstack.supervisor import Supervisor

    current = settings()
    configure_logging(current)
    current.home_dir.mkdir(parents=True, exist_ok=True)
    init_keys(current.keys_dir)
    demo = current.systems_file is None if demo is None else demo
    env = dict(os.environ, ERASURE_HOME_DIR=str(current.home_dir.resolve()))
    # The local desk is served over plain HTTP (http://127.0.0.1): its cookie cannot be `Secure` there.
    env.setdefault("ERASURE_DESK_COOKIE_SECURE", "false")
    # Each lane runs in one process only (all in one, or one per system): it owns its partitions
    # outright, no group to rejoin after a crash.
    env.setdefault("ERASURE_CONNECTOR_SOLE_OWNER", "true")
    connector_processes = connector_processes or current.up_connector_processes
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    with ExitStack() as cleanup:  # stops, in reverse: children, broker, broker file, fake Brevo
        if demo:
            current = _start_demo(current, env, cleanup)
        register = wiring.systems_register(current)
        wiring.ensure_signing_keys(current, register)
        wiring.prepare_ledger(current)
        broker = find_or_start(current.kafka_bootstrap_servers, current.home_dir / "broker")
        cleanup.callback(current.broker_file.unlink, missing_ok=True)
        cleanup.callback(broker.stop)
        current.broker_file.write_text(json.dumps({"bootstrap": broker.bootstrap, "kind": broker.kind}))
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        create_topics(current, register, broker.bootstrap)
        # Children beat <home>/run/<name>.heartbeat; a hung or stuck one is restarted (logged as a warning).
        supervisor = Supervisor(env, run_dir=current.home_dir.resolve() / "run",
                                stall_s=current.supervisor_stall_s)
        cleanup.callback(supervisor.stop_all)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        supervisor.spawn("worker", "worker")
        supervisor.spawn("desk", "desk")
        if connector_processes == "one":  # one heartbeat file, an entry per lane: a stalled lane is named
            supervisor.spawn("connectors", "connector", *register.ids)
        else:
            for system in register.ids:
                supervisor.spawn(f"connector:{system}", "connector", system)
        _announce(current, broker.bootstrap, broker.kind, register, demo)
        # An embedded broker that dies is started again on its port, with the topics (logged).
        keeper = BrokerKeeper(broker, lambda bootstrap: create_topics(current, register, bootstrap))
        supervisor.supervise(stopping.is_set, on_turn=keeper)


COMMANDS: list[click.Command] = [keys, topics_create, schemas, db, worker, connector, systems, fake, up]
