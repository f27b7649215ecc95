"""Intercom specifics: a deleted contact stays recoverable for 7 days, so the erasure is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import PermanentError, TaskContext
from connectors.processors.declarative import DeclarativeConnector
from connectors.registry import build_connector, settings_model
from pipeline.devstack.fake_server import Reply
from schemas import Identity, SubjectIdentities
from tests.fakes.intercom import FakeIntercom

TOKEN = "tok-0123456789"
EMAIL = "lea.tester@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="intercom", attempt=1)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


@pytest.fixture
def fake() -> Iterator[FakeIntercom]:
    server = FakeIntercom({TOKEN})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeIntercom, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeclarativeConnector]:
    monkeypatch.setenv("TEST_INTERCOM_TOKEN", TOKEN)
    settings = settings_model("intercom").model_validate(
        {"base_url": fake.url, "secrets": {"token": "TEST_INTERCOM_TOKEN"}})
    instance = build_connector("intercom", "intercom", settings)
    assert isinstance(instance, DeclarativeConnector)
    yield instance
    instance.close()


def test_deleted_contact_is_accepted_for_the_7_day_grace_period(fake: FakeIntercom,
                                                                 connector: DeclarativeConnector) -> None:
    contact_id = fake.add_contact(EMAIL)
    result = connector.erase(person(), CONTEXT)
    assert result.status == "erased" and result.evidence is not None
    assert not fake.has_contact(EMAIL) and contact_id in fake.deleted, "recoverable by Intercom"
    evidence = result.evidence
    assert evidence.assurance == "accepted" and evidence.completes_by is not None
    assert abs((evidence.completes_by - (datetime.now(UTC) + timedelta(days=7))).total_seconds()) < 60
    assert [(r.what, r.until) for r in evidence.residual] == [
        ("deleted contact, recoverable by Intercom", evidence.completes_by)]


def test_nobody_found_says_nothing_about_assurance(connector: DeclarativeConnector) -> None:
    result = connector.erase(person(), CONTEXT)
    assert result.status == "not_found" and result.evidence is not None
    assert result.evidence.assurance is None and result.evidence.completes_by is None


def test_a_merged_contact_is_followed_to_its_canonical_contact(fake: FakeIntercom,
                                                              connector: DeclarativeConnector) -> None:
    canonical = fake.add_contact("lea.other.address@example.net")
    merged = fake.merge(EMAIL, into=canonical)
    fake.contacts["searchable-" + merged] = {"type": "contact", "id": merged, "email": EMAIL, "role": "user"}
    # Search still lists the merged id (a merge after it was indexed): DELETE answers 410 + Link.
    result = connector.erase(person(), CONTEXT)
    assert result.status == "erased" and canonical in fake.deleted
    assert result.evidence is not None and result.evidence.reference == canonical


def test_a_merged_contact_without_a_canonical_link_is_reported(fake: FakeIntercom,
                                                              connector: DeclarativeConnector) -> None:
    merged = fake.merge(EMAIL, into="unused")
    fake.contacts["searchable-" + merged] = {"type": "contact", "id": merged, "email": EMAIL, "role": "user"}
    original = fake._merged_reply

    def without_link(method: str, contact_id: str) -> Reply | None:
        reply = original(method, contact_id)
        if reply is not None:
            reply.headers = {}
        return reply

    fake._merged_reply = without_link  # type: ignore[method-assign]
    with pytest.raises(PermanentError, match=r"merged into another .* names no canonical one"):
        connector.erase(person(), CONTEXT)


def test_a_search_miss_for_a_recent_request_is_looked_up_again(fake: FakeIntercom,
                                                              connector: DeclarativeConnector) -> None:
    contact_id = fake.add_recent_contact(EMAIL)  # signed up minutes ago: not searchable yet
    received = datetime.now(UTC) - timedelta(minutes=2)
    recent = TaskContext(request_id=CONTEXT.request_id, system="intercom", attempt=1, received_at=received)
    first = connector.erase(person(), recent)
    assert first.status == "pending" and first.job_ref == "declarative-settled"
    assert 7 * 60 < (first.poll_after_s or 0) <= 8 * 60, "ten minutes after the request"
    fake.index_now()
    again = TaskContext(request_id=CONTEXT.request_id, system="intercom", attempt=2, received_at=received,
                        job_ref=first.job_ref)
    result = connector.erase(person(), again)
    assert result.status == "erased" and contact_id in fake.deleted


def test_a_miss_for_an_older_request_is_not_found_at_once(fake: FakeIntercom,
                                                         connector: DeclarativeConnector) -> None:
    fake.add_recent_contact(EMAIL)
    old = TaskContext(request_id=CONTEXT.request_id, system="intercom", attempt=1,
                      received_at=datetime.now(UTC) - timedelta(hours=1))
    assert connector.erase(person(), old).status == "not_found"
