"""TLS and SASL for every Kafka client of the pipeline, from the `ERASURE_KAFKA_*` settings.

`check_settings` runs when the settings are read (a SASL protocol without a
mechanism is an error naming the key); `KafkaSecurity.from_settings` resolves
what lives outside the settings (the password, named by an environment variable
so that no secret sits in a file or a process listing; the CA and client
certificate files) when a client is about to be built. One `ssl.SSLContext`
serves kafka-python and aiokafka (faust) alike, so both verify the broker the
same way.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pipeline.settings import Settings

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MECHANISMS = (*PASSWORD_MECHANISMS, "OAUTHBEARER")


class KafkaSecurityError(ValueError):
    """The Kafka security settings cannot build a client; the message names the key to fix."""


def _env(key: str) -> str:
    return f"ERASURE_{key.upper()}"


def check_settings(protocol: str, mechanism: str | None, username: str | None, password_env: str | None,
                   oauth_token_file: Path | None, tls_files: Mapping[str, Path | None]) -> None:
    """Consistency of the Kafka security settings alone (no file or variable is read here)."""
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl and mechanism is None:
        raise KafkaSecurityError(
            f"{_env('kafka_sasl_mechanism')} is required with {_env('kafka_security_protocol')}={protocol}: "
            f"set one of {', '.join(MECHANISMS)}")
    if not sasl and mechanism is not None:
        raise KafkaSecurityError(
            f"{_env('kafka_sasl_mechanism')}={mechanism} needs {_env('kafka_security_protocol')} "
            f"SASL_SSL (or SASL_PLAINTEXT), not {protocol}")
    if mechanism in PASSWORD_MECHANISMS:
        for key, value in (("kafka_sasl_username", username), ("kafka_sasl_password_env", password_env)):
            if not value:
                raise KafkaSecurityError(f"{_env(key)} is required with {_env('kafka_sasl_mechanism')}="
                                         f"{mechanism}")
    if mechanism == "OAUTHBEARER" and oauth_token_file is None:
        raise KafkaSecurityError(f"{_env('kafka_sasl_oauth_token_file')} is required with "
                                 f"{_env('kafka_sasl_mechanism')}=OAUTHBEARER: a file your token agent "
                                 "keeps fresh")
    given = [key for key, value in tls_files.items() if value is not None]
    if given and not tls:
        raise KafkaSecurityError(f"{_env(given[0])} is set but {_env('kafka_security_protocol')}={protocol} "
                                 "sends everything in clear: use SSL or SASL_SSL")
    if tls_files.get("kafka_ssl_keyfile") is not None and tls_files.get("kafka_ssl_certfile") is None:
        raise KafkaSecurityError(f"{_env('kafka_ssl_keyfile')} needs {_env('kafka_ssl_certfile')} "
                                 "(the client certificate it belongs to)")


def _existing(key: str, path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise KafkaSecurityError(f"{_env(key)}: {path} is not a readable file")
    return path


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client reaches the brokers; built from settings, the password already read."""

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    oauth_token_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """Read the password from the variable the settings name; check that the named files exist."""
        environ = os.environ if environ is None else environ
        password = None
        if settings.kafka_sasl_password_env:
            password = environ.get(settings.kafka_sasl_password_env)
            if not password:
                raise KafkaSecurityError(
                    f"{_env('kafka_sasl_password_env')} names the variable "
                    f"{settings.kafka_sasl_password_env}, which is not set (or empty) in this process's "
                    "environment: export it")
        return cls(
            protocol=settings.kafka_security_protocol, sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username, sasl_password=password,
            oauth_token_file=_existing("kafka_sasl_oauth_token_file", settings.kafka_sasl_oauth_token_file),
            ssl_cafile=_existing("kafka_ssl_cafile", settings.kafka_ssl_cafile),
            ssl_certfile=_existing("kafka_ssl_certfile", settings.kafka_ssl_certfile),
            ssl_keyfile=_existing("kafka_ssl_keyfile", settings.kafka_ssl_keyfile),
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The broker is verified against the CA file (the system's CAs when unset), by name by default."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None:
            context.load_cert_chain(str(self.ssl_certfile),
                                    str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def read_token(self) -> str:
        """The OAUTHBEARER token, read anew at each authentication so that an agent can refresh it."""
        if self.oauth_token_file is None:
            raise KafkaSecurityError(f"{_env('kafka_sasl_oauth_token_file')} is not set")
        token = self.oauth_token_file.read_text().strip()
        if not token:
            raise KafkaSecurityError(
                f"{_env('kafka_sasl_oauth_token_file')}: {self.oauth_token_file} is empty")
        return token

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
            options["ssl_check_hostname"] = self.ssl_check_hostname
        if self.sasl_mechanism == "OAUTHBEARER":
            options["sasl_mechanism"] = "OAUTHBEARER"
            options["sasl_oauth_token_provider"] = _kafka_python_token_provider(self)
        elif self.sasl_mechanism is not None:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options


PLAINTEXT = KafkaSecurity()


def _kafka_python_token_provider(security: KafkaSecurity) -> Any:
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
        def token(self) -> str:
            return security.read_token()

    return FileTokenProvider()
