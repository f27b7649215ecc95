"""CPU per request of the faust worker's own code, without a broker: the router, then the aggregator.

    python bench/lean_path.py [--requests 3000] [--batch 500] [--profile out.prof]

Routes N requests (sealed for intake, as the HTTP intake publishes them) through `Router.route`
in batches, with a publisher that signs every message as the worker's does; then feeds the plans
it published, and one signed `erased` outcome per planned system, through `Aggregator.take` in
batches, against a SQLite ledger (a file, as the bench's). Reports the CPU milliseconds per
request of each stage (`time.process_time`: this process, every thread), so a change to the
per-message path is measured without the broker, faust's consumer loop or the connectors; the
whole pipeline's cost is `bench/run.py`'s business. With `--profile`, a cProfile of both stages.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from pipeline.codec import encode  # noqa: E402
from pipeline.crypto import init_keys, load_keys, seal_for_intake  # noqa: E402
from pipeline.devstack.demo import demo_systems  # noqa: E402
from pipeline.keywrap import AesGcmKeyWrapper  # noqa: E402
from pipeline.ledger import open_ledger  # noqa: E402
from pipeline.register import SystemsRegister  # noqa: E402
from pipeline.signing import (  # noqa: E402
    DESK,
    INTAKE,
    ROUTER,
    Signer,
    SignerEntry,
    SignerKey,
    SignersRegister,
    Verifier,
    connector_signer,
    default_entitlements,
)
from pipeline.streaming import topics  # noqa: E402
from pipeline.streaming.aggregator import Aggregator  # noqa: E402
from pipeline.streaming.publishing import Message, Received, dead_letter_message, signed  # noqa: E402
from pipeline.streaming.router import Router  # noqa: E402
from schemas import ErasureOutcome, ErasureRequested, Identity, SubjectIdentities  # noqa: E402


class SigningMemoryPublisher:
    """What `TopicPublisher` does before the broker: sign each message; kept in memory."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.sent: list[Message] = []

    async def send_all(self, messages: Sequence[Message]) -> None:
        self.sent.extend(signed(m, self.signer) for m in messages)

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        self.sent.append(dead_letter_message(record, reason, consumer))


async def inline(call: Any, *args: Any) -> Any:
    """`asyncio.to_thread` for a profile: cProfile sees only the thread that enabled it."""
    return call(*args)


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500, help="records per batch (the worker's batch_max)")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of both stages here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lean-path-"))
    init_keys(work / "keys")
    keys = load_keys(work / "keys", need_private=True)
    # The demo's four systems, as `bench/run.py` runs them (nothing is contacted here).
    register = SystemsRegister.model_validate(demo_systems("sqlite:///x.db", "http://127.0.0.1:1",
                                                           "redis://127.0.0.1:1/0", work / "uploads"))
    systems = [entry.id for entry in register.systems]
    signers = {i: Signer(i, SigningKey.generate())
               for i in (ROUTER, DESK, INTAKE, *(connector_signer(s) for s in systems))}
    signers_register = SignersRegister(signers=[SignerEntry(
        id=i, may_sign=default_entitlements(i),
        keys=[SignerKey(public_key=base64.b64encode(bytes(s.key.verify_key)).decode())])
        for i, s in signers.items()])
    ledger = open_ledger(f"sqlite:///{work / 'ledger.db'}", AesGcmKeyWrapper.generate())
    publisher = SigningMemoryPublisher(signers[ROUTER])
    router = Router(register, keys, ledger, publisher, Verifier(signers_register))
    aggregator = Aggregator(ledger, publisher, {}, Verifier(signers_register))

    requests = []
    for index in range(args.requests):
        subject = SubjectIdentities(identities=[Identity(identity_type="email",
                                                         identity_value=f"bench.{index}@example.test")])
        request = ErasureRequested(request_id=str(uuid.uuid4()), received_at=datetime.now(UTC),
                                   identities=seal_for_intake(keys.intake_public, subject))
        key, value = request.request_id.encode(), encode(request)
        requests.append(Received(topics.REQUESTS, 0, index, key, value,
                                 signers[INTAKE].headers(topics.REQUESTS, key, value)))

    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        asyncio.to_thread = inline  # type: ignore[assignment]  # the ledger calls into the profile
    if profiler:
        profiler.enable()
    started = time.process_time()
    for batch in batches(requests, args.batch):
        asyncio.run(router.route(batch))
    routed_s = time.process_time() - started
    if profiler:
        profiler.disable()

    now = datetime.now(UTC)
    events: list[Received] = []
    for message in publisher.sent:
        if message.topic != topics.OUTCOMES:
            continue
        events.append(Received(message.topic, 0, len(events), message.key, message.value, message.headers))
    for message in publisher.sent:
        if not message.topic.startswith("erasure.tasks."):
            continue
        system = message.topic.removeprefix("erasure.tasks.").removesuffix(".v1")
        outcome = ErasureOutcome(request_id=message.key.decode(), system=system, attempt=1, status="erased",
                                 occurred_at=now)
        value = encode(outcome)
        headers = signers[connector_signer(system)].headers(topics.OUTCOMES, message.key, value)
        events.append(Received(topics.OUTCOMES, 0, len(events), message.key, value, headers))
    publisher.sent.clear()

    if profiler:
        profiler.enable()
    started = time.process_time()
    completions = 0
    for batch in batches(events, args.batch):
        completions += len(asyncio.run(aggregator.take(batch)))
    aggregated_s = time.process_time() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    ledger.close()

    n = args.requests
    print(f"requests {n}, batch {args.batch}, completions {completions}")
    print(f"router     {1000 * routed_s / n:6.3f} CPU ms/request")
    print(f"aggregator {1000 * aggregated_s / n:6.3f} CPU ms/request ({len(events)} events)")
    print(f"both       {1000 * (routed_s + aggregated_s) / n:6.3f} CPU ms/request")
    if completions != n:
        raise SystemExit(f"only {completions} of {n} requests completed")


if __name__ == "__main__":
    main()
