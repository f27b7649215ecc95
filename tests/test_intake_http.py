"""The HTTP intake for backends in any language, over real HTTP, publishing to the real broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from pipeline.crypto import init_keys, load_keys, seal_for_intake
from pipeline.desk.app import DeskSecurity, Publisher, create_app
from pipeline.devstack.broker import Broker
from pipeline.kafka_clients import ensure_topics
from pipeline.ledger import open_ledger
from pipeline.ledger.accounts import Access
from pipeline.streaming import topics
from schemas import Identity, SubjectIdentities
from tests.desk_server import serve
from tests.fakes.signers import TestSigners
from tests.harness import read_topic

EMAIL = "http.intake.person@example.test"


class Intake:
    def __init__(self, url: str, token: str, public_key: bytes, bootstrap: str, topic: str) -> None:
        self.url, self.token, self.public_key = url, token, public_key
        self.bootstrap, self.topic = bootstrap, topic

    def body(self, request_id: str | None = None) -> dict[str, object]:
        sealed = seal_for_intake(self.public_key, SubjectIdentities(identities=[
            Identity(identity_type="email", identity_value=EMAIL)]))
        return {"request_id": request_id or str(uuid.uuid4()), "received_at": "2026-01-31T10:00:00+01:00",
                "channel": "http_api", "identities": sealed.model_dump()}

    def post(self, body: object, token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.token}"} if token != "" else {}
        return httpx.post(f"{self.url}/v1/erasure-requests", json=body, headers=headers)


@pytest.fixture(scope="module")
def intake(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    root: Path = tmp_path_factory.mktemp("intake")
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    access = Access(ledger)
    token = access.add_client("php-backend", datetime.now(UTC))
    init_keys(root / "keys")
    requests_topic = f"intake.requests.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka.bootstrap, [requests_topic], 2)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)

    def send(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        producer.send(topic, key=key, value=value, headers=headers).get(30)

    publisher = Publisher(send, TestSigners().signer("desk"))
    # This module checks the contract and the deadline arithmetic on fixed dates (31 January): the window
    # of accepted `received_at` is checked in tests/security/test_desk_hardening.py.
    contract_dates = DeskSecurity(intake_max_age_s=1000 * 365 * 86400)
    app = create_app(ledger, access, publisher, None, "s", topics.task_topic, requests_topic,
                     security=contract_dates)
    with serve(app) as url:
        yield Intake(url, token, load_keys(root / "keys").intake_public, kafka.bootstrap, requests_topic)
    producer.close()
    ledger.close()


def published(intake: Intake, request_id: str) -> list[dict[str, object]]:
    return [json.loads(r.value) for r in read_topic(intake.bootstrap, intake.topic)
            if r.key == request_id.encode()]


def test_good_token_202_with_deadline_and_the_event_is_published(intake: Intake) -> None:
    body = intake.body()
    response = intake.post(body)
    assert response.status_code == 202
    answer = response.json()
    assert answer["request_id"] == body["request_id"]
    assert answer["due_at"].startswith("2026-02-28T10:00:00"), "31 Jan + 1 month = 28 Feb"
    events = published(intake, str(body["request_id"]))
    assert len(events) == 1 and events[0]["identities"]["alg"] == "sealedbox-x25519"
    assert EMAIL not in json.dumps(events)


def test_duplicate_gets_the_same_answer_and_publishes_nothing_more(intake: Intake) -> None:
    body = intake.body()
    first, second = intake.post(body), intake.post(body)
    assert first.status_code == second.status_code == 202 and first.json() == second.json()
    assert len(published(intake, str(body["request_id"]))) == 1
    changed = {**body, "channel": "email"}
    conflict = intake.post(changed)
    assert conflict.status_code == 409 and "different body" in conflict.json()["detail"]


@pytest.mark.parametrize("token", ["", "erk_not-a-real-token"])
def test_missing_or_wrong_token_is_401(intake: Intake, token: str) -> None:
    response = intake.post(intake.body(), token=token)
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


def test_invalid_body_is_422_naming_the_field_not_its_value(intake: Intake) -> None:
    body = intake.body()
    body["identities"] = [{"identity_type": "email", "identity_value": EMAIL}]  # in clear: refused
    body["received_at"] = "yesterday"
    response = intake.post(body)
    assert response.status_code == 422
    fields = {tuple(d["loc"]) for d in response.json()["detail"]}
    assert ("body", "identities") in fields and ("body", "received_at") in fields
    assert EMAIL not in response.text


def test_a_client_cannot_claim_the_retention_sweeps_channel(intake: Intake) -> None:
    """`retention` says nobody asked (no identity to verify): only `erasure sweep` may say so."""
    body = {**intake.body(), "channel": "retention", "verification": "not_applicable"}
    response = intake.post(body)
    assert response.status_code == 422
    problem = response.json()["detail"]
    assert [tuple(d["loc"]) for d in problem] == [("body", "channel")]
    assert "erasure sweep" in problem[0]["msg"]
    assert published(intake, str(body["request_id"])) == []


def test_openapi_document_describes_the_contract(intake: Intake) -> None:
    document = httpx.get(f"{intake.url}/openapi.json").json()
    operation = document["paths"]["/v1/erasure-requests"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErasureRequested"}
    contract = document["components"]["schemas"]["ErasureRequested"]
    assert "identities" in contract["required"] and "SealedIdentities" in document["components"]["schemas"]


def test_schemathesis_finds_no_server_error(intake: Intake) -> None:
    """Generated requests from the OpenAPI document, with and without a valid token."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{intake.url}/openapi.json")
    operation = schema["/v1/erasure-requests"]["POST"]
    failures: list[str] = []
    seen: set[int] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(schemathesis.GenerationMode.POSITIVE)
           | operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
    def check(case: object) -> None:
        for headers in ({"authorization": f"Bearer {intake.token}"}, {}):
            response = case.call(headers=headers)  # type: ignore[attr-defined]
            seen.add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{response.status_code}: {response.text[:200]}")
            case.validate_response(response, checks=(not_a_server_error,))  # type: ignore[attr-defined]

    check()
    assert failures == []
    assert {401, 422} <= seen and seen & {202, 409}, f"the generated requests reached the handler: {seen}"
