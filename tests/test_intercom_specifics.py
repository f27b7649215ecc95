"""Intercom specifics: a deleted contact stays recoverable for 7 days, so the erasure is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import TaskContext
from connectors.processors.declarative import DeclarativeConnector
from connectors.registry import build_connector, settings_model
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
