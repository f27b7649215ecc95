"""The shortcuts of the worker's per-message path change nothing a consumer of its records sees.

The router builds each task from its plan's validated fields without validating it again, the
verifier decodes each register's keys once, and the producer hashes each key once: tasks still
meet their contract byte for byte, a register that changes is still the one used, and records
still land on the partition the default partitioner (the connectors', the intake's) picks.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]
from kafka.partitioner import murmur2 as kafka_python_murmur2
from nacl.signing import SigningKey

from pipeline.codec import encode
from pipeline.crypto import init_keys, load_keys, seal_for_intake
from pipeline.devstack.demo import demo_systems
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import open_ledger
from pipeline.register import SystemsRegister
from pipeline.signing import ROUTER, Signer, SignerEntry, SignerKey, SignersRegister, Unverified, Verifier
from pipeline.streaming import topics
from pipeline.streaming.router import Router
from pipeline.streaming.transport import KeyHashPartitioner
from schemas import ErasureRequested, ErasureTask, Identity, Scope, SubjectIdentities
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners

REGISTER = SystemsRegister.model_validate(demo_systems("sqlite:///x.db", "http://127.0.0.1:1"))


@pytest.mark.parametrize("scope", [None, Scope(systems=["brevo"]), Scope(data_categories=["account"])])
def test_each_task_the_router_publishes_is_a_valid_task_byte_for_byte(tmp_path: Path, scope: Scope | None,
                                                                      ) -> None:
    init_keys(tmp_path / "keys")
    keys = load_keys(tmp_path / "keys", need_private=True)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value="a@example.test")])
    request = ErasureRequested(request_id=str(uuid.uuid4()), received_at=datetime.now(UTC),
                               identities=seal_for_intake(keys.intake_public, subject), scope=scope)
    publisher = MemoryPublisher()
    try:
        signers = TestSigners()
        asyncio.run(Router(REGISTER, keys, ledger, publisher, signers.verifier()).route(
            [signers.received(topics.REQUESTS, 0, request.request_id.encode(), request)]))
    finally:
        ledger.close()
    tasks = [m for m in publisher.sent if m.topic != topics.OUTCOMES]
    assert tasks, "the request was planned for at least one system"
    for message in tasks:
        task = ErasureTask.model_validate_json(message.value)  # the contract, checked in full
        assert encode(task) == message.value
        assert message.topic == topics.task_topic(task.system)
        assert task.scope == scope and task.attempt == 1


def signer_register(*signers: Signer) -> SignersRegister:
    return SignersRegister(signers=[SignerEntry(
        id=s.id, may_sign=["plan"],
        keys=[SignerKey(public_key=base64.b64encode(bytes(s.key.verify_key)).decode())]) for s in signers])


def check_plan(verifier: Verifier, signer: Signer, value: bytes) -> str:
    return verifier.check(topics.OUTCOMES, b"k", value, signer.headers(topics.OUTCOMES, b"k", value), "plan")


def test_a_verifier_given_a_new_register_verifies_with_its_keys_only() -> None:
    old, new = Signer(ROUTER, SigningKey.generate()), Signer(ROUTER, SigningKey.generate())
    value = b'{"event_type":"erasure.planned"}'
    verifier = Verifier(signer_register(old))
    assert check_plan(verifier, old, value) == ROUTER
    verifier.register = signer_register(new)  # what a reload after a rotation does
    assert check_plan(verifier, new, value) == ROUTER
    with pytest.raises(Unverified):
        check_plan(verifier, old, value)


def test_a_malformed_public_key_in_the_register_verifies_nothing() -> None:
    signer = Signer(ROUTER, SigningKey.generate())
    register = SignersRegister(signers=[SignerEntry(id=ROUTER, may_sign=["plan"],
                                                    keys=[SignerKey(public_key="not a key")])])
    with pytest.raises(Unverified, match="does not verify"):
        check_plan(Verifier(register), signer, b"{}")


def test_keys_land_on_the_partitions_the_default_partitioners_pick() -> None:
    partitioner, aiokafka_default = KeyHashPartitioner(kept=16), DefaultPartitioner()
    for count in (1, 4, 7, 12):
        partitions = list(range(count))
        for index in range(100):
            key = str(uuid.UUID(int=index * 7919)).encode()
            picked = partitioner(key, partitions, partitions)
            assert picked == aiokafka_default(key, partitions, partitions)
            assert picked == (kafka_python_murmur2(key) & 0x7FFFFFFF) % count  # kafka-python's choice
            assert partitioner(key, partitions, partitions) == picked, "from the kept hash: the same"
