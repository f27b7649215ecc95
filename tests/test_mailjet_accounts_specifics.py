"""Mailjet: deletions on every sub-account, and an accepted erasure re-checked until confirmed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from connectors.base import TaskContext
from connectors.processors.declarative import DeclarativeConnector
from connectors.registry import build_connector, settings_model
from connectors.retry import RetryPolicy
from pipeline.crypto import new_data_key, seal_with_data_key
from pipeline.worker.erase import InProcessRetries, TaskEraser
from schemas import ErasureTask, Identity, SubjectIdentities
from tests.fakes.mailjet_accounts import FakeMailjetAccounts

MAIN = ("pub-main-0123", "priv-main-3210")
SUB = ("pub-sub-4567", "priv-sub-7654")
EMAIL = "lea.tester@example.net"
RID = "9d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
ENV = {"MJ_KEY": MAIN[0], "MJ_SECRET": MAIN[1], "MJ_SUB_KEY": SUB[0], "MJ_SUB_SECRET": SUB[1]}


def person() -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])


def context(received_at: datetime, job_ref: str | None = None) -> TaskContext:
    return TaskContext(request_id=RID, system="mailjet", attempt=1, job_ref=job_ref, received_at=received_at)


@pytest.fixture
def fake() -> Iterator[FakeMailjetAccounts]:
    server = FakeMailjetAccounts({"main": MAIN, "sub": SUB})
    server.start()
    yield server
    server.stop()


def build(fake: FakeMailjetAccounts, monkeypatch: pytest.MonkeyPatch,
          **extra: object) -> DeclarativeConnector:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = settings_model("mailjet").model_validate({
        "base_url": fake.url, "secrets": {"api_key": "MJ_KEY", "secret_key": "MJ_SECRET"},
        "accounts": [{"api_key": "MJ_SUB_KEY", "secret_key": "MJ_SUB_SECRET"}], **extra})
    connector = build_connector("mailjet", "mailjet", settings)
    assert isinstance(connector, DeclarativeConnector)
    return connector


def test_the_person_is_erased_on_every_sub_account(fake: FakeMailjetAccounts,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    main_id = fake.accounts["main"].add_contact(EMAIL)
    sub_id = fake.accounts["sub"].add_contact(EMAIL)
    fake.accounts["sub"].add_contact("someone.else@example.net")
    connector = build(fake, monkeypatch)
    try:
        result = connector.erase(person(), context(datetime.now(UTC)))
    finally:
        connector.close()
    assert result.status == "erased" and result.evidence and result.evidence.records_affected == 2
    assert not fake.accounts["main"].has_contact(EMAIL) and not fake.accounts["sub"].has_contact(EMAIL)
    assert fake.accounts["sub"].has_contact("someone.else@example.net")
    assert {main_id, sub_id} <= {int(r) for r in (result.evidence.reference or "").split(", ")}


def test_an_account_entry_must_name_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match=r"accounts\[0\]"):
        settings_model("mailjet").model_validate({
            "secrets": {"api_key": "MJ_KEY", "secret_key": "MJ_SECRET"}, "accounts": [{"api_key": "X"}]})
    with pytest.raises(ValidationError, match="no sub-accounts"):
        settings_model("hubspot").model_validate({"secrets": {"token": "T"}, "accounts": [{"token": "U"}]})


def test_an_accepted_erasure_is_rechecked_and_confirmed_after_the_purge(
        fake: FakeMailjetAccounts, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.accounts["main"].add_contact(EMAIL)
    connector = build(fake, monkeypatch, recheck_accepted=True)
    received = datetime.now(UTC) - timedelta(hours=1)
    try:
        first = connector.erase(person(), context(received))
        assert first.status == "pending" and first.evidence is not None
        assert first.evidence.assurance == "accepted", "meanwhile the outcome says what was promised"
        # A day before the one-month deadline comes before Mailjet's 30-day purge: checked then.
        wait = timedelta(seconds=first.poll_after_s or 0)
        assert timedelta(days=26, hours=22) < wait <= timedelta(days=27)
        early = connector.erase(person(), context(received, first.job_ref))
        assert early.status == "erased" and early.evidence and early.evidence.assurance == "accepted"
        assert early.evidence.reference == "re-check: 1 of 1 record(s) still at the processor"
        fake.advance(31 * 24 * 3600)  # Mailjet purges the anonymised record after 30 days
        late = connector.erase(person(), context(received, first.job_ref))
    finally:
        connector.close()
    assert late.status == "erased" and late.evidence is not None
    assert late.evidence.assurance == "confirmed" and late.evidence.residual == []


def test_the_worker_requeues_the_recheck_for_the_date(fake: FakeMailjetAccounts,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the worker's TaskEraser: a pending re-check is re-queued with its job_ref and not_before."""
    fake.accounts["main"].add_contact(EMAIL)
    connector = build(fake, monkeypatch, recheck_accepted=True)
    key, now = new_data_key(), datetime.now(UTC)
    task = ErasureTask(request_id=RID, system="mailjet", attempt=1, received_at=now,
                       due_at=now + timedelta(days=30), subject_ref="sr_test",
                       identities=seal_with_data_key(key, RID, person()))
    eraser = TaskEraser("mailjet", connector, lambda _rid: key, RetryPolicy(max_attempts=5),
                        InProcessRetries(1, 1.0))
    try:
        handled = eraser.erase(task)
    finally:
        connector.close()
    assert handled.outcome.status == "pending" and handled.requeue is not None
    assert handled.requeue.job_ref and handled.requeue.job_ref.startswith("declarative-recheck:")
    assert handled.outcome.evidence and handled.outcome.evidence.assurance == "accepted"
    assert handled.requeue.not_before and handled.requeue.not_before > datetime.now(UTC) + timedelta(days=20)
