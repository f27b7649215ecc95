"""The `erasure` command: one CLI for operators and officers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from connectors.base import ConfigError
from connectors.retention import RetentionPolicy
from pipeline.codec import now_utc
from pipeline.crypto import MissingKeyError, init_keys, load_keys
from pipeline.ledger import RequestView, open_ledger
from pipeline.policy import check_register_against_policy, load_policy
from pipeline.register import SystemsRegister, load_systems
from pipeline.settings import Settings, load_settings
from pipeline.streaming import topics
from schemas.identity import IdentityType


class CliError(click.ClickException):
    pass


def _settings() -> Settings:
    return load_settings()


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _systems_file(settings: Settings) -> Path:
    return settings.systems_file or settings.home_dir / "systems.yaml"


def _register(settings: Settings) -> SystemsRegister:
    try:
        return load_systems(_systems_file(settings))
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _policy(settings: Settings, register: SystemsRegister) -> RetentionPolicy:
    """The retention policy, checked against the register: start-up fails on any mismatch."""
    try:
        policy, source = load_policy(settings.policy_file)
        check_register_against_policy(register, policy, _systems_file(settings), source)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return policy


def _bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    if settings.broker_file.exists():
        return str(json.loads(settings.broker_file.read_text())["bootstrap"])
    raise CliError("no broker: run `erasure up`, or set KAFKA_BOOTSTRAP_SERVERS")


def _keys(settings: Settings, need_private: bool) -> Any:
    try:
        return load_keys(settings.keys_dir, settings.intake_public_key, settings.intake_private_key,
                         settings.subject_ref_key, need_private=need_private)
    except MissingKeyError as exc:
        raise CliError(str(exc)) from None


@click.group()
def main() -> None:
    """GDPR erasure pipeline."""


# -- keys and topics ---------------------------------------------------------------
@main.group()
def keys() -> None:
    """Intake key pair and subject_ref key."""


@keys.command("init")
@click.option("--force", is_flag=True, help="Replace existing keys (old requests become unreadable)")
def keys_init(force: bool) -> None:
    """Create the intake key pair; publishers need only the public key it prints."""
    settings = _settings()
    path = init_keys(settings.keys_dir, overwrite=force)
    click.echo(f"intake public key ({path}): {path.read_text().strip()}")


@main.command("topics")
def topics_create() -> None:
    """Create the pipeline's topics (idempotent)."""
    from pipeline.kafka_clients import ensure_topics

    settings = _settings()
    register = _register(settings)
    ensure_topics(_bootstrap(settings), topics.all_topics(register.ids), settings.topic_partitions,
                  settings.topic_replication_factor, topics.topic_configs(settings.requests_retention_s))
    click.echo("topics ready")


@main.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
def schemas_export() -> None:
    """Rewrite schemas/*.schema.json from the models."""
    from schemas.export import export_all

    for path in export_all():
        click.echo(str(path))


# -- components --------------------------------------------------------------------
@main.command()
def worker() -> None:
    """Run the router and the aggregator (faust)."""
    import faust

    from pipeline.streaming.app import build_app

    settings = _settings()
    _configure_logging(settings)
    register = _register(settings)
    _policy(settings, register)
    if settings.webhook_url and not settings.webhook_secret:
        raise CliError("ERASURE_WEBHOOK_URL is set but ERASURE_WEBHOOK_SECRET is not: "
                       "set the secret the receiver checks signatures with")
    app = build_app(settings, register, _keys(settings, need_private=True), open_ledger(settings.ledger_url),
                    _bootstrap(settings))
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


def _build_connectors(settings: Settings, register: SystemsRegister, systems: list[str]) -> dict[str, Any]:
    from connectors.registry import build_connector

    built = {}
    for system in systems:
        try:
            entry = register.get(system)
            built[system] = build_connector(entry.id, entry.connector.type, entry.connector_settings())
        except ConfigError as exc:
            raise CliError(f"{_systems_file(settings)}: {exc}") from None
    return built


@main.command()
@click.argument("systems", nargs=-1, required=True)
def connector(systems: tuple[str, ...]) -> None:
    """Run the connector workers of one or more SYSTEMS (a thread each)."""
    import threading

    from pipeline.worker.runtime import ConnectorWorker

    settings = _settings()
    _configure_logging(settings)
    register = _register(settings)
    policy = _policy(settings, register)
    built = _build_connectors(settings, register, list(systems))
    ledger = open_ledger(settings.ledger_url)
    bootstrap = _bootstrap(settings)
    runners = [ConnectorWorker(settings, system, instance, bootstrap, ledger.data_key, policy)
               for system, instance in built.items()]

    def stop(*_: object) -> None:
        for runner in runners:
            runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=r.run, name=f"connector-{r.system}") for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)


@main.group()
def systems() -> None:
    """The systems register."""


@systems.command("check")
def systems_check() -> None:
    """Try each system's credentials and reachability, erasing nothing; print a table."""
    settings = _settings()
    register = _register(settings)
    rows, failures = [], 0
    for entry in register.systems:
        try:
            instance = _build_connectors(settings, register, [entry.id])[entry.id]
            check = getattr(instance, "check", None)
            result = ("ok: " + str(check())) if callable(check) else "ok: configured (no check call)"
            instance.close()
        except CliError as exc:
            result, failures = f"FAILED: {str(exc).splitlines()[-1].strip()}", failures + 1
        except Exception as exc:  # the table reports every system, whatever fails
            message = getattr(exc, "message", None) or type(exc).__name__
            result, failures = f"FAILED ({getattr(exc, 'kind', 'error')}): {message}", failures + 1
        rows.append((entry.id, entry.kind, entry.connector.type, result))
    width = max(len(r[0]) for r in rows)
    click.echo(f"{'system':<{width}}  {'kind':<9}  {'type':<11}  result")
    for system, kind, connector_type, result in rows:
        click.echo(f"{system:<{width}}  {kind:<9}  {connector_type:<11}  {result}")
    if failures:
        raise CliError(f"{failures} system(s) failed the check")


# -- everyday commands ---------------------------------------------------------------
@main.command()
@click.option("--email", help="The person's e-mail address")
@click.option("--phone", help="The person's phone number")
@click.option("--user-id", help="The person's account id on the site")
@click.option("--request-id", help="UUID v4 idempotency key (default: a new one)")
@click.option("--received-at", help="When the person asked, ISO 8601 (default: now)")
def submit(email: str | None, phone: str | None, user_id: str | None, request_id: str | None,
           received_at: str | None) -> None:
    """Publish a deletion request; prints its request id."""
    from pipeline.intake import IntakeClient

    given: dict[IdentityType, str | None] = {"email": email, "phone": phone, "user_id": user_id}
    identities: dict[str, str] = {k: v for k, v in given.items() if v}
    if not identities:
        raise CliError("give at least one of --email, --phone, --user-id")
    settings = _settings()
    when = datetime.fromisoformat(received_at) if received_at else now_utc()
    if when.tzinfo is None:
        raise CliError("--received-at needs a time zone, e.g. 2026-11-26T10:00:00+01:00")
    with IntakeClient(_bootstrap(settings), _keys(settings, need_private=False).intake_public) as client:
        click.echo(client.submit(identities, when, request_id=request_id, channel="other"))


def _view_json(view: RequestView) -> dict[str, Any]:
    return {
        "request_id": view.request_id, "status": view.status, "subject_ref": view.subject_ref,
        "received_at": view.received_at.isoformat(), "due_at": view.due_at.isoformat(),
        "completed_at": view.completed_at.isoformat() if view.completed_at else None,
        "on_time": view.on_time, "deadline_flag": view.deadline_flag,
        "systems": [{"system": s.system, "status": s.status, "attempt": s.attempt,
                     "evidence": s.evidence, "holds": s.holds, "error": s.error,
                     "updated_at": s.updated_at.isoformat()} for s in view.systems],
    }


@main.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
def status(request_id: str, as_json: bool) -> None:
    """Per-system outcomes and the deadline of one request."""
    settings = _settings()
    view = open_ledger(settings.ledger_url).request(request_id, now_utc())
    if view is None:
        raise CliError(f"no request {request_id} in the ledger (yet): it may still be in the broker")
    if as_json:
        click.echo(json.dumps(_view_json(view), indent=2))
        return
    flag = f" [{view.deadline_flag}]" if view.deadline_flag else ""
    click.echo(f"request {view.request_id}: {view.status}{flag}")
    click.echo(f"  received {view.received_at:%Y-%m-%d %H:%M} UTC, due {view.due_at:%Y-%m-%d %H:%M} UTC"
               + (f", completed {view.completed_at:%Y-%m-%d %H:%M:%S} UTC "
                  f"({'on time' if view.on_time else 'late'})" if view.completed_at else ""))
    for s in view.systems:
        detail = ""
        if s.evidence:
            detail = " " + ", ".join(f"{k}={v}" for k, v in s.evidence.items() if v is not None)
        if s.error:
            detail += f" error: {s.error.get('message')}"
        click.echo(f"  {s.system:<20} {s.status:<10} attempt {s.attempt}{detail}")
        for hold in s.holds:
            click.echo(f"    holds {hold['data_category']} until {hold['retain_until'][:10]}: "
                       f"{hold['legal_basis']} ({hold['citation']})")
    for event in open_ledger(settings.ledger_url).events(request_id):
        if event.kind in ("release_requested", "released"):
            click.echo(f"  {event.recorded_at:%Y-%m-%d %H:%M} {event.system}: {event.kind.replace('_', ' ')}")


@main.command("list")
@click.option("--status", "status_filter", help="Only requests in this status")
@click.option("--overdue", is_flag=True, help="Only unfinished requests past their deadline")
@click.option("--json", "as_json", is_flag=True)
def list_requests(status_filter: str | None, overdue: bool, as_json: bool) -> None:
    """Requests, newest first."""
    settings = _settings()
    views = open_ledger(settings.ledger_url).list_requests(now_utc(), status_filter, overdue)
    if as_json:
        click.echo(json.dumps([_view_json(v) for v in views], indent=2))
        return
    for v in views:
        click.echo(f"{v.request_id}  {v.status:<22} received {v.received_at:%Y-%m-%d} "
                   f"due {v.due_at:%Y-%m-%d} {v.deadline_flag or ''}")


@main.command()
@click.option("--system", help="Only this system's holds")
@click.option("--json", "as_json", is_flag=True)
def holds(system: str | None, as_json: bool) -> None:
    """Active legal holds, by system and end date."""
    settings = _settings()
    rows = open_ledger(settings.ledger_url).active_holds(system)
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


@main.group()
def ledger() -> None:
    """The ledger's integrity."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Check the hash chain of the event log; names the first broken link."""
    settings = _settings()
    broken = open_ledger(settings.ledger_url).verify_chain()
    if broken is not None:
        raise CliError(f"ledger event at chain position {broken} does not follow from the one "
                       "before: the event log was altered")
    click.echo("ledger chain intact")


# -- the desk: dashboard and HTTP intake -------------------------------------------------
def _desk_secret(settings: Settings) -> str:
    if settings.desk_secret:
        return settings.desk_secret
    path = settings.home_dir / "desk.secret"
    if not path.exists():
        import secrets

        settings.home_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def build_desk(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from pipeline.desk.app import Publisher, create_app
    from pipeline.ledger.accounts import Access

    ledger = open_ledger(settings.ledger_url)
    register_policy, register = None, None
    if _systems_file(settings).exists():
        register = _register(settings)
        register_policy = _policy(settings, register)
    producers: list[Any] = []

    def send(topic: str, key: bytes, value: bytes) -> None:
        if not producers:
            producers.append(KafkaProducer(bootstrap_servers=_bootstrap(settings), acks="all",
                                           enable_idempotence=True, client_id="erasure-desk"))
        producers[0].send(topic, key=key, value=value).get(30)

    return create_app(ledger, Access(ledger), Publisher(send), register_policy, _desk_secret(settings),
                      topics.task_topic, topics.REQUESTS, register, _opendsr_callbacks(settings, register))


def _opendsr_callbacks(settings: Settings, register: SystemsRegister | None) -> Any:
    from connectors.processors.opendsr import OpenDsrSettings
    from connectors.processors.opendsr_callbacks import CallbackTrust
    from pipeline.desk.app import OpenDsrCallbacks

    domains = {}
    for entry in register.systems if register else []:
        connector_settings = entry.connector_settings()
        if isinstance(connector_settings, OpenDsrSettings):
            domains[connector_settings.processor_domain] = entry.id
    if not domains:
        return None
    anchors = settings.opendsr_trust_anchors_file
    if anchors is None or not anchors.exists():
        raise CliError("OpenDSR systems are configured: set ERASURE_OPENDSR_TRUST_ANCHORS_FILE to the PEM "
                       "CA certificates that may issue their signing certificates")
    return OpenDsrCallbacks(domains, CallbackTrust.from_pem(anchors.read_bytes()),
                            settings.opendsr_callback_url, topics.OUTCOMES)


@main.command()
@click.option("--host", default=None, help="Default: ERASURE_DESK_HOST (127.0.0.1)")
@click.option("--port", type=int, default=None, help="Default: ERASURE_DESK_PORT (8640)")
def desk(host: str | None, port: int | None) -> None:
    """Serve the officer's desk and the HTTP intake (OpenAPI at /docs)."""
    import uvicorn

    settings = _settings()
    _configure_logging(settings)
    uvicorn.run(build_desk(settings), host=host or settings.desk_host, port=port or settings.desk_port,
                log_level="warning", access_log=False)


@main.group()
def users() -> None:
    """Desk accounts: officers act on requests, viewers only look."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["officer", "viewer"]), required=True)
@click.option("--password-env", default=None, help="Read the password from this variable, not a prompt")
def users_add(name: str, role: str, password_env: str | None) -> None:
    """Create or replace a desk account."""
    from pipeline.ledger.accounts import Access

    settings = _settings()
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise CliError(f"{password_env} is not set: put the new password in it")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        Access(open_ledger(settings.ledger_url)).set_user(name, role, password, now_utc())  # type: ignore[arg-type]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"{role} {name} saved")


@main.group()
def clients() -> None:
    """HTTP intake clients (one bearer token each)."""


@clients.command("add")
@click.argument("name")
def clients_add(name: str) -> None:
    """Create a client and print its token (shown once; stored hashed)."""
    from pipeline.ledger.accounts import Access

    settings = _settings()
    click.echo(Access(open_ledger(settings.ledger_url)).add_client(name, now_utc()))


@main.command()
@click.argument("request_id")
@click.argument("system")
@click.option("--by", "author", required=True, help="Who confirms (recorded in the ledger)")
@click.option("--outcome", type=click.Choice(["erased", "not_found", "held"]), required=True)
@click.option("--category", help="With --outcome held: the data category kept")
@click.option("--note", help="A reference: ticket, e-mail, letter")
def confirm(request_id: str, system: str, author: str, outcome: str, category: str | None,
            note: str | None) -> None:
    """Confirm what a system with no API did (attributed and timestamped)."""
    from pipeline.ledger.actions import ActionError, confirm_manual

    settings = _settings()
    policy = _policy(settings, _register(settings)) if outcome == "held" else None
    try:
        status = confirm_manual(open_ledger(settings.ledger_url), request_id, system, outcome,  # type: ignore[arg-type]
                                author, now_utc(), policy, category, note)
    except ActionError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"{system} confirmed {outcome} by {author}; request {request_id} is {status}")


# -- fakes and the embedded stack ------------------------------------------------------
@main.command()
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


@main.command()
@click.option("--demo/--no-demo", default=None,
              help="Use the demo register (fake Brevo, SQLite site db); default when no "
                   "ERASURE_SYSTEMS_FILE is set")
def up(demo: bool | None) -> None:
    """Everything on one machine: broker, router/aggregator, one worker per system."""
    from pipeline.devstack.broker import find_or_start
    from pipeline.devstack.demo import DEMO_BREVO_KEY_ENV, demo_api_key, seed_brevo, write_demo
    from pipeline.devstack.fake_brevo import FakeBrevo
    from pipeline.kafka_clients import ensure_topics

    settings = _settings()
    _configure_logging(settings)
    log = logging.getLogger("erasure.up")
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    init_keys(settings.keys_dir)
    demo = settings.systems_file is None if demo is None else demo
    env = dict(os.environ, ERASURE_HOME_DIR=str(settings.home_dir.resolve()))
    fake_brevo = None
    if demo:
        key = demo_api_key()
        fake_brevo = FakeBrevo({key})
        brevo_url = fake_brevo.start()
        seed_brevo(brevo_url, key)
        env[DEMO_BREVO_KEY_ENV] = key
        env["ERASURE_SYSTEMS_FILE"] = str(write_demo(settings.home_dir, brevo_url).resolve())
        os.environ.update({DEMO_BREVO_KEY_ENV: key, "ERASURE_SYSTEMS_FILE": env["ERASURE_SYSTEMS_FILE"]})
        settings = _settings()
    register = _register(settings)
    broker = find_or_start(settings.kafka_bootstrap_servers, settings.home_dir / "broker")
    settings.broker_file.write_text(json.dumps({"bootstrap": broker.bootstrap, "kind": broker.kind}))
    env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    ensure_topics(broker.bootstrap, topics.all_topics(register.ids), settings.topic_partitions,
                  settings.topic_replication_factor, topics.topic_configs(settings.requests_retention_s))
    commands = {"worker": ["worker"], "desk": ["desk"],
                **{f"connector:{s}": ["connector", s] for s in register.ids}}
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def spawn(name: str) -> None:
        children[name] = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *commands[name]],
                                          env=env)

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name in commands:
        spawn(name)
    click.echo(f"erasure pipeline up: broker {broker.bootstrap} ({broker.kind}), "
               f"ledger {settings.ledger_url}, systems {', '.join(register.ids)}", err=True)
    if demo:
        click.echo("demo: try `erasure submit --email alice.martin@example.org` (held, not found and "
                   "erased side by side), then `erasure status ID` and `erasure holds`", err=True)
        _demo_accounts(settings)
        click.echo(f"desk: http://{settings.desk_host}:{settings.desk_port}/ (user demo-officer, "
                   f"password in {settings.home_dir / 'demo-officer.password'}); "
                   f"intake token in {settings.home_dir / 'demo-intake.token'}", err=True)
    try:
        while not stopping:
            time.sleep(0.5)
            for name, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    log.warning("%s exited with %s; restarting", name, child.returncode)
                    spawn(name)
    finally:
        for child in children.values():
            child.terminate()
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        broker.stop()
        settings.broker_file.unlink(missing_ok=True)
        if fake_brevo is not None:
            fake_brevo.stop()


def _demo_accounts(settings: Settings) -> None:
    """A demo officer and intake client, their secrets in owner-only files of the home dir."""
    import secrets

    from pipeline.ledger.accounts import Access

    access = Access(open_ledger(settings.ledger_url))
    password_file = settings.home_dir / "demo-officer.password"
    if not password_file.exists():
        password = secrets.token_urlsafe(12)
        access.set_user("demo-officer", "officer", password, now_utc())
        _write_private(password_file, password)
        _write_private(settings.home_dir / "demo-intake.token", access.add_client("demo", now_utc()))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
