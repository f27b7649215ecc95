"""The composition root: builds the pipeline's parts from `Settings`, and nothing else does.

Every command of the CLI and the dev stack's supervisor ask this module for the
register, the policy, the keys, the ledger, the broker address, the stream app,
the connector workers and the desk. A setting or a file that cannot be used
raises `SetupError`, whose message names the file and the key to fix.
Everything past the settings (faust, FastAPI, SQLAlchemy, Kafka clients, the connectors, even
the register's and the keys' modules) is imported by the function that needs it, so a command
only pays for what it builds and `erasure --help` starts at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust
    from fastapi import FastAPI

    from connectors.base import Connector
    from connectors.retention import RetentionPolicy
    from pipeline.crypto import PipelineKeys
    from pipeline.desk.app import OpenDsrCallbacks, Publisher
    from pipeline.kafka_security import KafkaSecurity
    from pipeline.keywrap import KeyWrapper
    from pipeline.ledger import Ledger
    from pipeline.ledger.views import Views
    from pipeline.register import SystemsRegister
    from pipeline.settings import Settings
    from pipeline.signing import Signer, Verifier
    from pipeline.worker.runtime import ConnectorWorker


class SetupError(Exception):
    """The settings, or a file they name, cannot build the pipeline; the message says what to fix."""


# -- configuration files -----------------------------------------------------------
def systems_file(settings: Settings) -> Path:
    return settings.systems_file or settings.home_dir / "systems.yaml"


def systems_register(settings: Settings) -> SystemsRegister:
    from connectors.base import ConfigError
    from pipeline.register import load_systems

    try:
        return load_systems(systems_file(settings))
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def retention_policy(settings: Settings, systems: SystemsRegister) -> RetentionPolicy:
    """The retention policy, checked against the register: start-up fails on any mismatch."""
    from connectors.base import ConfigError
    from pipeline.policy import check_register_against_policy, load_policy

    try:
        policy, source = load_policy(settings.policy_file)
        check_register_against_policy(systems, policy, systems_file(settings), source)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None
    return policy


def pipeline_keys(settings: Settings, need_private: bool) -> PipelineKeys:
    from pipeline.crypto import MissingKeyError, load_keys

    try:
        return load_keys(settings.keys_dir, settings.intake_public_key, settings.intake_private_key,
                         settings.subject_ref_key, need_private=need_private)
    except MissingKeyError as exc:
        raise SetupError(str(exc)) from None


# -- signed events ------------------------------------------------------------------
def signers_file(settings: Settings) -> Path:
    return settings.signers_file or settings.keys_dir / "signers.json"


def signing_keys_dir(settings: Settings) -> Path:
    return settings.signing_keys_dir or settings.keys_dir / "signing"


def signer_ids(system_ids: Iterable[str]) -> list[str]:
    """Every signer of a deployment: the router, the desk, the intake client, the sweeps, and one
    connector per registered system."""
    from pipeline.signing import DESK, INTAKE, ROUTER, SWEEP, connector_signer

    return [ROUTER, DESK, INTAKE, SWEEP, *(connector_signer(s) for s in system_ids)]


def ensure_signing_keys(settings: Settings, systems: SystemsRegister | None) -> list[str]:
    """Create the missing signing keys and register entries; the ids of those created."""
    from pipeline.signing_keys import RegisterError, ensure_signers

    try:
        return ensure_signers(signers_file(settings), signing_keys_dir(settings),
                              signer_ids(systems.ids if systems else []))
    except RegisterError as exc:
        raise SetupError(str(exc)) from None


def signer(settings: Settings, signer_id: str) -> Signer:
    """This component's own signing key, and no other."""
    from pipeline.crypto import MissingKeyError
    from pipeline.signing_keys import load_signer

    try:
        return load_signer(signing_keys_dir(settings), signer_id)
    except MissingKeyError as exc:
        raise SetupError(str(exc)) from None


def verifier(settings: Settings) -> Verifier:
    from pipeline.signing_keys import RegisterError, register_verifier

    try:
        return register_verifier(signers_file(settings))
    except RegisterError as exc:
        raise SetupError(str(exc)) from None


def bootstrap_servers(settings: Settings) -> str:
    """The broker's address: the setting, else the file `erasure up` writes for its embedded broker."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    if settings.broker_file.exists():
        return str(json.loads(settings.broker_file.read_text())["bootstrap"])
    raise SetupError("no broker: run `erasure up`, or set KAFKA_BOOTSTRAP_SERVERS")


def kafka_security(settings: Settings) -> KafkaSecurity:
    """TLS and SASL for the Kafka clients: the password read from the variable the settings name."""
    from pipeline.kafka_security import KafkaSecurity, KafkaSecurityError

    try:
        return KafkaSecurity.from_settings(settings)
    except KafkaSecurityError as exc:
        raise SetupError(str(exc)) from None


# -- the ledger --------------------------------------------------------------------
def key_wrapper(settings: Settings) -> KeyWrapper:
    """What wraps the ledger's data keys: the KEK of ERASURE_KEK, else of <keys dir>/kek."""
    from pipeline.crypto import MissingKeyError, load_kek

    try:
        return load_kek(settings.keys_dir, settings.kek)
    except MissingKeyError as exc:
        raise SetupError(str(exc)) from None


@contextlib.contextmanager
def _ledger_answers(settings: Settings) -> Iterator[None]:
    """A ledger database that cannot be opened is a setup error naming the setting, the URL (its
    password hidden) and the driver's reason, not a driver's traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        shown = make_url(settings.ledger_url).render_as_string(hide_password=True)
        source = ("ERASURE_DATABASE_URL" if settings.database_url
                  else "the default SQLite ledger under ERASURE_HOME_DIR")
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise SetupError(f"cannot open the ledger at {shown} ({source}): {reason}. Check that the "
                         "database server runs, that the database exists and that the URL is right."
                         ) from None


def ledger(settings: Settings, data_keys: bool = False) -> Ledger:
    """The ledger, its schema brought to the newest revision first (a no-op when it is there).

    Only the components that open identities (router, connector workers, the desk's manual
    messages) ask for `data_keys=True` and need the KEK; every other command gets a ledger that
    refuses to store or read a data key (least privilege: an officer's shell needs no KEK).
    """
    from pipeline.ledger import open_ledger

    wrapper = key_wrapper(settings) if data_keys else None
    with _ledger_answers(settings):
        return open_ledger(settings.ledger_url, wrapper)


def ledger_views(settings: Settings) -> Views:
    """What officers read of the ledger (no writer, no KEK), its schema brought to head first."""
    from pipeline.ledger.views import open_views

    with _ledger_answers(settings):
        return open_views(settings.ledger_url)


def prepare_ledger(settings: Settings) -> str | None:
    """Bring the ledger's schema up to date; return the revision it is at."""
    from pipeline.ledger.migrations import current_revision, upgrade

    with _ledger_answers(settings):
        upgrade(settings.ledger_url)
        return current_revision(settings.ledger_url)


# -- the router and aggregator ---------------------------------------------------------
def check_webhook(settings: Settings) -> None:
    if settings.webhook_url and not settings.webhook_secret:
        raise SetupError("ERASURE_WEBHOOK_URL is set but ERASURE_WEBHOOK_SECRET is not: "
                         "set the secret the receiver checks signatures with")


def stream_app(settings: Settings) -> faust.App:
    """The faust app of the router and the aggregator, its configuration checked first."""
    from pipeline.letters import LetterWriter
    from pipeline.signing import ROUTER
    from pipeline.streaming.app import build_app

    systems = systems_register(settings)
    policy = retention_policy(settings, systems)
    check_webhook(settings)
    kafka_security(settings)  # a missing password or CA file is a SetupError before faust starts
    keys = pipeline_keys(settings, need_private=True)
    return build_app(settings, systems, keys, ledger(settings, data_keys=True), bootstrap_servers(settings),
                     signer(settings, ROUTER), verifier(settings),
                     LetterWriter.from_settings(settings, systems, policy))


# -- connectors --------------------------------------------------------------------------
def build_connectors(settings: Settings, systems: SystemsRegister,
                     system_ids: list[str]) -> dict[str, Connector]:
    """One connector per system id, built from its register entry."""
    from connectors.base import ConfigError
    from connectors.registry import build_connector

    built = {}
    for system in system_ids:
        try:
            entry = systems.get(system)
            built[system] = build_connector(entry.id, entry.connector.type, entry.connector_settings(),
                                            entry.rate_limit)
        except ConfigError as exc:
            raise SetupError(f"{systems_file(settings)}: {exc}") from None
    return built


def connector_workers(settings: Settings, system_ids: list[str]) -> list[ConnectorWorker]:
    """The workers of the given systems, sharing one ledger (for data keys) and the policy."""
    from pipeline.signing import connector_signer
    from pipeline.worker.runtime import ConnectorWorker

    systems = systems_register(settings)
    policy = retention_policy(settings, systems)
    built = build_connectors(settings, systems, system_ids)
    keys = ledger(settings, data_keys=True).keys
    broker = bootstrap_servers(settings)
    security = kafka_security(settings)
    return [ConnectorWorker(settings, system, instance, broker, keys.data_key, policy, security=security,
                            data_keys=keys.data_keys,
                            signer=signer(settings, connector_signer(system)), verifier=verifier(settings))
            for system, instance in built.items()]


# -- the desk ----------------------------------------------------------------------------
def desk_secret(settings: Settings) -> str:
    """The session-signing secret: the setting, else one generated once into the home dir."""
    if settings.desk_secret:
        return settings.desk_secret
    path = settings.home_dir / "desk.secret"
    if not path.exists():
        settings.home_dir.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


DESK_SEND_TIMEOUT_MS = 15_000


def desk_publisher(settings: Settings) -> Publisher:
    """Publishes for the desk; the producer is built on first use, so the desk starts without a broker."""
    from pipeline.desk.app import Publisher
    from pipeline.kafka_clients import producer
    from pipeline.renewing_producer import RenewingProducer
    from pipeline.signing import DESK

    producers: list[RenewingProducer] = []
    desk_signer = signer(settings, DESK)

    def send(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if not producers:  # replaced when a broker that lost its state makes it unusable (issue 11)
            producers.append(RenewingProducer(lambda: producer(
                bootstrap_servers(settings), "erasure-desk", security=kafka_security(settings),
                max_block_ms=DESK_SEND_TIMEOUT_MS), "desk"))
        producers[0].deliver([(topic, key, value, headers)], DESK_SEND_TIMEOUT_MS / 1000)

    return Publisher(send, desk_signer)


def opendsr_callbacks(settings: Settings, systems: SystemsRegister | None) -> OpenDsrCallbacks | None:
    """Which OpenDSR processors may call back, and the CAs their certificates must chain to."""
    from connectors.processors.opendsr import OpenDsrSettings
    from connectors.processors.opendsr_callbacks import CallbackTrust
    from pipeline.desk.app import OpenDsrCallbacks
    from pipeline.streaming import topics

    domains = {}
    for entry in systems.systems if systems else []:
        connector_settings = entry.connector_settings()
        if isinstance(connector_settings, OpenDsrSettings):
            domains[connector_settings.processor_domain] = entry.id
    if not domains:
        return None
    anchors = settings.opendsr_trust_anchors_file
    if anchors is None or not anchors.exists():
        raise SetupError("OpenDSR systems are configured: set ERASURE_OPENDSR_TRUST_ANCHORS_FILE to the PEM "
                         "CA certificates that may issue their signing certificates")
    if not settings.opendsr_controller_id:
        raise SetupError("OpenDSR systems are configured: set ERASURE_OPENDSR_CONTROLLER_ID to the "
                         "controller_id your processors know you by (their callbacks must name it)")
    return OpenDsrCallbacks(domains, CallbackTrust.from_pem(anchors.read_bytes()),
                            settings.opendsr_callback_url, topics.OUTCOMES, settings.opendsr_controller_id)


def desk_app(settings: Settings) -> FastAPI:
    """The officer's desk and the HTTP intake; the register is optional (the desk runs without one)."""
    from pipeline.desk.app import DeskSecurity, create_app
    from pipeline.desk.broker_figures import BrokerProbe
    from pipeline.desk.metrics import watch_broker
    from pipeline.ledger.accounts import Access
    from pipeline.letters import LetterWriter
    from pipeline.streaming import topics

    records = ledger(settings, data_keys=True)
    systems, policy = None, None
    if systems_file(settings).exists():
        systems = systems_register(settings)
        policy = retention_policy(settings, systems)
    app = create_app(records, Access(records), desk_publisher(settings), policy, desk_secret(settings),
                     topics.task_topic, topics.REQUESTS, systems, opendsr_callbacks(settings, systems),
                     security=DeskSecurity.from_settings(settings),
                     letters=LetterWriter.from_settings(settings, systems, policy),
                     heartbeat_file=settings.heartbeat_file)
    ids = systems.ids if systems else []  # issue 11: lag and dead letters on /metrics, the broker on /readyz
    watch_broker(app, BrokerProbe(lambda: (bootstrap_servers(settings), kafka_security(settings)),
                                  lambda: ids, timeout_s=settings.broker_probe_timeout_s,
                                  cache_s=settings.broker_figures_cache_s))
    return app
