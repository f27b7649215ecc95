"""A compacted Kafka topic of the site's own (e.g. user profiles keyed by user id).

Erasing writes a tombstone (a null value) for each of the subject's keys; log
compaction then removes the older values. With `check_existing`, the topic is
read first so that a key with no live value reports `not_found` (and a repeat
changes nothing); reading is linear in the topic's size, which compaction bounds.
The cluster may ask for TLS and SASL (PLAIN, SCRAM-SHA-256/512): the same options
as the pipeline's own `ERASURE_KAFKA_*` settings, the password named by a variable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import EraseResult, PermanentError, RetryableError, TaskContext, require_secret
from connectors.templating import expand, template_fields
from schemas import Evidence, SubjectIdentities


class KafkaTopicSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str | None = None
    bootstrap_env: str | None = None
    topic: str = Field(min_length=1)
    key_template: str = Field(description="The record key, e.g. {user_id} or user:{email}")
    check_existing: bool = True
    read_timeout_s: float = Field(default=30.0, gt=0)
    category: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @field_validator("key_template")
    @classmethod
    def _templated(cls, value: str) -> str:
        if not template_fields(value):
            raise ValueError("key_template must name an identity, e.g. {user_id}")
        return value

    @model_validator(mode="after")
    def _one_bootstrap(self) -> KafkaTopicSettings:
        if (self.bootstrap is None) == (self.bootstrap_env is None):
            raise ValueError("give exactly one of 'bootstrap' and 'bootstrap_env'")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password_env):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                             "sasl_username and sasl_password_env")
        if not sasl and self.sasl_mechanism:
            raise ValueError("sasl_mechanism needs security_protocol SASL_SSL (or SASL_PLAINTEXT)")
        if not self.security_protocol.endswith("SSL") and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError("ssl_cafile/ssl_certfile need security_protocol SSL or SASL_SSL")
        return self


def client_options(settings: KafkaTopicSettings, system: str) -> dict[str, Any]:
    """kafka-python's TLS and SASL keyword arguments for these settings."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol.endswith("SSL"):
        options.update(ssl_check_hostname=settings.ssl_check_hostname,
                       ssl_cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
                       ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
                       ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None)
    if settings.sasl_mechanism:
        options.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=require_secret(settings.sasl_password_env or "", system))
    return options


class KafkaTopicConnector:
    def __init__(self, system: str, settings: KafkaTopicSettings) -> None:
        self.system = system
        self.settings = settings
        self.bootstrap = settings.bootstrap or require_secret(settings.bootstrap_env or "", system)
        self.client_options = client_options(settings, system)
        self._producer: KafkaProducer | None = None

    def _live_keys(self, wanted: set[bytes]) -> set[bytes]:
        """Which of the keys have a non-null latest value: read the topic to its high-water mark."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=100, **self.client_options)
        try:
            partitions = consumer.partitions_for_topic(self.settings.topic)
            if not partitions:
                raise PermanentError(self.system, f"topic {self.settings.topic!r} does not exist")
            assigned = [TopicPartition(self.settings.topic, p) for p in partitions]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            latest: dict[bytes, bool] = {}
            deadline = time.monotonic() + self.settings.read_timeout_s
            while True:
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        if record.key in wanted:
                            latest[record.key] = record.value is not None
                # The fetch high-water mark is exact (ListOffsets is not, on some brokers).
                if all(consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                       for tp in assigned):
                    break
                if time.monotonic() > deadline:
                    raise RetryableError(self.system, f"reading topic {self.settings.topic!r} timed out")
            return {key for key, live in latest.items() if live}
        finally:
            consumer.close()

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        keys = {k.encode("utf-8") for k in expand(self.settings.key_template, subject)}
        if not keys:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        try:
            targets = self._live_keys(keys) if self.settings.check_existing else keys
            if not targets:
                return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                               enable_idempotence=True, **self.client_options)
            futures = [self._producer.send(self.settings.topic, key=key, value=None)
                       for key in sorted(targets)]
            for future in futures:
                future.get(30)
        except KafkaError as exc:
            raise RetryableError(self.system, f"Kafka unavailable ({type(exc).__name__})") from None
        return EraseResult(status="erased", evidence=Evidence(records_affected=len(targets)))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
