"""Zendesk tickets before the user: deleted for good (a job whose `completed` can hide failed
tickets), redacted comment by comment, or kept and reported as residual data."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connectors.base import EraseResult, PermanentError, TaskContext
from connectors.processors.zendesk import ZendeskConnector, ZendeskSettings
from connectors.processors.zendesk_tickets import redact_all
from schemas import Identity, SubjectIdentities
from tests.fakes.zendesk import FakeZendesk
from tests.fakes.zendesk_tickets import REDACTED_CHAR

AGENT = "agent@site.example"
TOKEN = "zendesk-tickets-token"
EMAIL = "ines.tester@example.net"
Maker = Callable[[str], ZendeskConnector]
RID = "3c5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"


def person() -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])


def context(job_ref: str | None = None, attempt: int = 1) -> TaskContext:
    return TaskContext(request_id=RID, system="zendesk", attempt=attempt, job_ref=job_ref)


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    server = FakeZendesk(AGENT, {TOKEN})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> Iterator[Maker]:
    monkeypatch.setenv("TEST_ZENDESK_EMAIL", AGENT)
    monkeypatch.setenv("TEST_ZENDESK_TOKEN", TOKEN)
    made: list[ZendeskConnector] = []

    def make(tickets: str) -> ZendeskConnector:
        made.append(ZendeskConnector("zendesk", ZendeskSettings.model_validate(
            {"base_url": fake.url, "email_env": "TEST_ZENDESK_EMAIL", "api_token_env": "TEST_ZENDESK_TOKEN",
             "tickets": tickets})))
        return made[-1]

    yield make
    for connector in made:
        connector.close()


def until_final(connector: ZendeskConnector, result: EraseResult, limit: int = 10) -> EraseResult:
    attempt = 1
    while result.status == "pending" and limit:
        attempt, limit = attempt + 1, limit - 1
        result = connector.erase(person(), context(result.job_ref, attempt))
    return result


def test_delete_erases_the_tickets_for_good_before_the_user(fake: FakeZendesk, connect: Maker) -> None:
    user_id = fake.add_user(EMAIL, name="Ines Tester", tickets=3)
    other = fake.add_user("other@example.net", tickets=1)
    connector = connect("delete")
    first = connector.erase(person(), context())
    assert first.status == "pending" and (first.job_ref or "").startswith("zendesk-tickets:")
    assert fake.state_of(EMAIL) == "active", "the user waits until the tickets are gone"
    final = until_final(connector, first)
    assert final.status == "erased" and fake.tickets_of(user_id) == [] and not fake.has_user(EMAIL)
    assert len(fake.tickets_of(other)) == 1
    assert final.evidence is not None and final.evidence.assurance == "confirmed"
    assert final.evidence.residual == []


def test_a_completed_job_with_failed_tickets_is_a_partial_failure(fake: FakeZendesk, connect: Maker) -> None:
    user_id = fake.add_user(EMAIL, tickets=3)
    stuck = [t["id"] for t in fake.tickets_of(user_id)][1]
    fake.unpurgeable[stuck] = "TicketLocked"
    connector = connect("delete")
    first = connector.erase(person(), context())
    with pytest.raises(PermanentError) as info:
        until_final(connector, first)
    message = str(info.value)
    assert "1 of 3 ticket(s) not deleted" in message and f"ticket {stuck}: TicketLocked" in message
    assert "the user was not deleted" in message and EMAIL not in message
    job = next(iter(fake.jobs.values()))
    assert job["status"] == "completed", "Zendesk calls it completed all the same"
    assert fake.state_of(EMAIL) == "active"


def test_redact_redacts_every_comment_the_person_wrote(fake: FakeZendesk, connect: Maker) -> None:
    user_id = fake.add_user(EMAIL, name="Ines Tester", tickets=2)
    connector = connect("redact")
    result = connector.erase(person(), context())
    assert result.status == "erased" and not fake.has_user(EMAIL)
    for ticket in fake.tickets_of(user_id):
        theirs, agents = fake.comments[ticket["id"]]
        assert "Ines" not in theirs["html_body"] and REDACTED_CHAR in theirs["plain_body"]
        assert theirs["html_body"].startswith('<div class="zd-comment" dir="auto">')
        assert "looking into it" in agents["plain_body"], "agents' replies are not the person's comments"
    assert result.evidence is not None and result.evidence.assurance == "confirmed"
    assert [r.what for r in result.evidence.residual] == [
        "2 requested ticket(s): subjects and agents' replies (the person's comments redacted)",
        "original e-mails behind the redacted comments, until Zendesk's background redaction ends"]
    # A repeat finds nothing left to redact and nobody to delete.
    assert connector.erase(person(), context(attempt=2)).status == "not_found"


def test_keep_reports_the_tickets_as_residual(fake: FakeZendesk, connect: Maker) -> None:
    user_id = fake.add_user(EMAIL, tickets=2)
    result = connect("keep").erase(person(), context())
    assert result.status == "erased" and len(fake.tickets_of(user_id)) == 2
    assert result.evidence is not None
    assert [r.what for r in result.evidence.residual] == [
        "2 requested ticket(s) with their text (not redacted)"]


def test_redact_all_wraps_text_runs_only() -> None:
    html = '<div class="zd-comment"><p>Hi <b>there</b></p> </div>'
    assert redact_all(html) == ('<div class="zd-comment"><p><redact>Hi </redact><b><redact>there</redact>'
                                '</b></p> </div>')
