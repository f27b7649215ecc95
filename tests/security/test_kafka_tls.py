"""The pipeline's Kafka clients over TLS (mutual, hostname checked) and the security settings' checks.

The embedded Tansu 0.6.0 serves plaintext only (see `pipeline/devstack/broker.py`), so the
broker here is Tansu behind a TLS terminator that speaks TLS 1.2+ with a certificate from
a throwaway CA made with `cryptography`, and requires a client certificate from the same CA.
Tansu advertises the terminator's address, so every connection a client opens, bootstrap,
group coordinator and partition leader alike, goes through TLS.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from pydantic import ValidationError

from pipeline import kafka_clients, wiring
from pipeline.devstack.broker import Broker, free_port, start_tansu
from pipeline.settings import Settings
from pipeline.streaming.transport import broker_credentials
from tests.fakes.opendsr import PrivateKey, make_ca, make_leaf

PASSWORD_VAR = "ERASURE_TEST_KAFKA_PASSWORD"


# -- a throwaway PKI and a TLS terminator in front of the embedded broker ------------------------
def _write_pem(path: Path, certificate: Any, key: PrivateKey | None = None) -> Path:
    data = certificate.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    path.write_bytes(data)
    return path


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # issued by the same CA for another host name
    stranger_key: Path


def make_files(root: Path) -> Pki:
    ca, ca_key = make_ca("Kafka test CA")
    server, server_key = make_leaf("localhost", (ca, ca_key))
    client, client_key = make_leaf("erasure-pipeline", (ca, ca_key))
    stranger, stranger_key = make_leaf("kafka.other.test", (ca, ca_key))
    return Pki(_write_pem(root / "ca.pem", ca),
               _write_pem(root / "server.pem", server), _write_pem(root / "server.key", server, server_key),
               _write_pem(root / "client.pem", client), _write_pem(root / "client.key", client, client_key),
               _write_pem(root / "stranger.pem", stranger),
               _write_pem(root / "stranger.key", stranger, stranger_key))


class TlsTerminator:
    """Accepts TLS on 127.0.0.1:`port` (client certificate required) and relays bytes to `upstream`."""

    def __init__(self, port: int, upstream: int, cert: Path, key: Path, ca: Path) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", port))
        self.handshakes = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        self.handshakes += 1
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            sock.close()


@dataclass
class TlsBroker:
    bootstrap: str
    pki: Pki
    terminator: TlsTerminator


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    root = tmp_path_factory.mktemp("kafka-tls")
    pki = make_files(root)
    tls_port, plain_port = free_port(), free_port()
    terminator = TlsTerminator(tls_port, plain_port, pki.server_cert, pki.server_key, pki.ca)
    broker: Broker = start_tansu(root / "tansu", plain_port, advertised=f"localhost:{tls_port}")
    yield TlsBroker(broker.bootstrap, pki, terminator)
    terminator.stop()
    broker.stop()


def tls_settings(pki: Pki, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca,
                              "kafka_ssl_certfile": pki.client_cert, "kafka_ssl_keyfile": pki.client_key,
                              **overrides}
    return Settings(**values)


def _poll_one(consumer: KafkaConsumer, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            return records[0]
    raise AssertionError(f"nothing consumed in {timeout_s} s")


# -- round trips over TLS ------------------------------------------------------------------------
def test_producer_admin_and_group_consumer_round_trip_over_mutual_tls(tls_broker: TlsBroker) -> None:
    security = wiring.kafka_security(tls_settings(tls_broker.pki))
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    kafka_clients.ensure_topics(tls_broker.bootstrap, [topic], 1, security=security)
    producer = kafka_clients.producer(tls_broker.bootstrap, "tls-test", security=security)
    producer.send(topic, key=b"k", value=b"over tls").get(30)
    producer.close()
    consumer = kafka_clients.group_consumer(tls_broker.bootstrap, f"g-{topic}", "tls-test", 6.0, 1.0,
                                            security=security)
    try:
        consumer.subscribe([topic])
        assert _poll_one(consumer).value == b"over tls"
        consumer.commit()
    finally:
        consumer.close()
    assert tls_broker.terminator.handshakes >= 2


def test_faust_app_of_the_pipeline_round_trip_over_tls(tls_broker: TlsBroker) -> None:
    from pipeline.streaming.app import _faust_app

    settings = tls_settings(tls_broker.pki)
    app = _faust_app(settings, tls_broker.bootstrap)
    topic = app.topic(f"tls-faust-{uuid.uuid4().hex[:8]}", key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw", partitions=1)
    received: list[bytes] = []

    @app.agent(topic)
    async def collect(stream: Any) -> None:
        async for value in stream:
            received.append(value)

    async def run() -> None:
        await app.start()
        try:
            await topic.send(key=b"k", value=b"faust over tls")
            deadline = time.monotonic() + 60
            while not received and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await app.stop()

    asyncio.run(asyncio.wait_for(run(), 120))  # a client that cannot connect fails, never hangs
    assert received == [b"faust over tls"]


def test_a_broker_certificate_for_another_host_is_refused(tls_broker: TlsBroker) -> None:
    pki = tls_broker.pki
    port, upstream = free_port(), int(tls_broker.terminator.upstream)
    impostor = TlsTerminator(port, upstream, pki.stranger_cert, pki.stranger_key, pki.ca)
    try:
        security = wiring.kafka_security(tls_settings(pki))
        with pytest.raises(KafkaError):
            kafka_clients.producer(f"localhost:{port}", "tls-test", security=security,
                                   bootstrap_timeout_ms=3000)
        assert impostor.handshakes == 0
    finally:
        impostor.stop()


def test_plaintext_clients_get_nothing_from_the_tls_listener(tls_broker: TlsBroker) -> None:
    with pytest.raises(KafkaError):
        kafka_clients.producer(tls_broker.bootstrap, "plain-test", bootstrap_timeout_ms=3000)


def test_the_site_topic_connector_erases_over_mutual_tls(tls_broker: TlsBroker) -> None:
    from connectors.base import TaskContext
    from connectors.stores.kafka_topic import KafkaTopicConnector, KafkaTopicSettings
    from schemas import Identity, SubjectIdentities

    pki, topic = tls_broker.pki, f"site.profiles.{uuid.uuid4().hex[:8]}"
    security = wiring.kafka_security(tls_settings(pki))
    kafka_clients.ensure_topics(tls_broker.bootstrap, [topic], 1, security=security)
    producer = kafka_clients.producer(tls_broker.bootstrap, "site", security=security)
    producer.send(topic, key=b"u2", value=b"profile").get(30)
    producer.close()
    store = KafkaTopicConnector("profiles", KafkaTopicSettings(
        bootstrap=tls_broker.bootstrap, topic=topic, key_template="{user_id}", security_protocol="SSL",
        ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key))
    subject = SubjectIdentities(identities=[Identity(identity_type="user_id", identity_value="u2")])
    context = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="profiles", attempt=1)
    try:
        assert store.erase(subject, context).status == "erased"
        assert store.erase(subject, context).status == "not_found"
    finally:
        store.close()


# -- SASL ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.environ.get("KAFKA_SASL_TEST_BOOTSTRAP"), reason=(
    "needs a SASL cluster (KAFKA_SASL_TEST_BOOTSTRAP and ERASURE_KAFKA_* settings): the embedded "
    "Tansu 0.6.0 keeps no SCRAM credentials and does not offer PLAIN"))
def test_round_trip_with_sasl_on_a_real_cluster() -> None:
    bootstrap = os.environ["KAFKA_SASL_TEST_BOOTSTRAP"]
    security = wiring.kafka_security(Settings())
    assert security.sasl_mechanism is not None
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    kafka_clients.ensure_topics(bootstrap, [topic], 1, security=security)
    producer = kafka_clients.producer(bootstrap, "sasl-test", security=security)
    producer.send(topic, value=b"over sasl").get(30)
    producer.close()
    consumer = kafka_clients.group_consumer(bootstrap, f"g-{topic}", "sasl-test", 6.0, 1.0, security=security)
    try:
        consumer.subscribe([topic])
        assert _poll_one(consumer).value == b"over sasl"
    finally:
        consumer.close()


# -- settings --------------------------------------------------------------------------------------
def test_sasl_without_a_mechanism_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="ERASURE_KAFKA_SASL_MECHANISM is required"):
        Settings(kafka_security_protocol="SASL_SSL")


def test_scram_without_a_password_variable_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="ERASURE_KAFKA_SASL_PASSWORD_ENV is required"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="erasure")


def test_a_ca_file_with_plaintext_is_refused() -> None:
    with pytest.raises(ValidationError, match="ERASURE_KAFKA_SSL_CAFILE is set but"):
        Settings(kafka_ssl_cafile=Path("ca.pem"))


def test_a_missing_password_variable_is_reported_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="erasure", kafka_sasl_password_env=PASSWORD_VAR)
    with pytest.raises(wiring.SetupError, match=f"names the variable {PASSWORD_VAR}, which is not set"):
        wiring.kafka_security(settings)


def test_settings_from_the_environment_reach_both_clients(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    pki = make_files(tmp_path)
    monkeypatch.setenv(PASSWORD_VAR, "s3cret-from-env")
    for key, value in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
                       "SASL_USERNAME": "erasure", "SASL_PASSWORD_ENV": PASSWORD_VAR,
                       "SSL_CAFILE": str(pki.ca)}.items():
        monkeypatch.setenv(f"ERASURE_KAFKA_{key}", value)
    security = wiring.kafka_security(Settings())
    assert "s3cret" not in repr(security)
    options = security.kafka_python()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret-from-env"
    assert options["ssl_context"].check_hostname
    credentials: Any = broker_credentials(security)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("erasure", "s3cret-from-env")
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
