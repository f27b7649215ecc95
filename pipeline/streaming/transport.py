"""faust's aiokafka transport with a short fetch wait.

faust hard-codes `fetch_max_wait_ms=1500`. A broker that holds a fetch for the
whole wait when it had nothing at request time (Tansu does) then adds up to
1.5 s to every hop of the router and the aggregator. Registered as the
`erasure-kafka://` transport.

`broker_credentials` turns the pipeline's `KafkaSecurity` into faust's
credentials (TLS, SASL with a password or an OAUTHBEARER token), which faust
hands to every aiokafka consumer, producer and topic creator it builds.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

from pipeline.kafka_security import KafkaSecurity

FETCH_MAX_WAIT_MS = 100
SCHEME = "erasure-kafka"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka at start()
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


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
