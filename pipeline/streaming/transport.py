"""faust's aiokafka transport with a short fetch wait.

faust hard-codes `fetch_max_wait_ms=1500`. A broker that holds a fetch for the
whole wait when it had nothing at request time (Tansu does) then adds up to
1.5 s to every hop of the router and the aggregator. Registered as the
`erasure-kafka://` transport. `KeyHashPartitioner` is the producer's partitioner: the default
one's partitions, each key hashed once.

`broker_credentials` turns the pipeline's `KafkaSecurity` into faust's
credentials (TLS, SASL with a password or an OAUTHBEARER token), which faust
hands to every aiokafka consumer, producer and topic creator it builds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import faust
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner, murmur2  # type: ignore[import-untyped]
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

from pipeline.kafka_security import KafkaSecurity

FETCH_MAX_WAIT_MS = 100
# aiokafka's fetch routine also wakes every `consumer_timeout_ms` (200 ms) with nothing to do: it
# waits on the fetches in flight, on each read by faust and on (un)assignment, which wake it at once.
FETCHER_TIMEOUT_MS = 1000
SCHEME = "erasure-kafka"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka at start()
        consumer._consumer_timeout = FETCHER_TIMEOUT_MS / 1000  # likewise
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"

KEY_HASHES_KEPT = 65_536


class KeyHashPartitioner:
    """aiokafka's default partitioner (murmur2 of the key's bytes), each key's hash kept.

    The same partition for every key as the default one, the connectors' and the intake's;
    murmur2 is pure Python, and the worker sends up to seven records under one request id (the
    plan, a task per system, the completion).
    """

    def __init__(self, kept: int = KEY_HASHES_KEPT) -> None:
        self._hash = lru_cache(maxsize=kept)(murmur2)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # no key: a random partition, the default partitioner's choice
            return int(DefaultPartitioner()(key, all_partitions, available))
        index = (self._hash(key) & 0x7FFFFFFF) % len(all_partitions)
        return int(all_partitions[index])


def broker_url(bootstrap: str) -> str:
    return ";".join(f"{SCHEME}://{server}" for server in bootstrap.split(","))


class _FileToken(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(self, security: KafkaSecurity) -> None:
        self.security = security

    async def token(self) -> str:
        return self.security.read_token()


def broker_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """faust's credentials for the settings' protocol; None for PLAINTEXT."""
    context = security.ssl_context()
    if security.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=_FileToken(security), ssl_context=context)
    if security.sasl_mechanism is not None:
        return faust.SASLCredentials(username=security.sasl_username, password=security.sasl_password,
                                     ssl_context=context, mechanism=security.sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None
