"""faust's aiokafka transport with a short fetch wait.

faust hard-codes `fetch_max_wait_ms=1500`. A broker that holds a fetch for the
whole wait when it had nothing at request time (Tansu does) then adds up to
1.5 s to every hop of the router and the aggregator. Registered as the
`erasure-kafka://` transport.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

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
