"""Zendesk listings read whole: a person's comments on every page of a ticket redacted (and no
one else's), every ticket they requested on every page, every page of the users search."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from connectors.base import TaskContext
from connectors.processors.zendesk import ZendeskConnector, ZendeskSettings
from schemas import Identity, SubjectIdentities
from tests.fakes.zendesk import FakeZendesk
from tests.fakes.zendesk_tickets import AGENT_ID, REDACTED_CHAR

AGENT = "agent@site.example"
TOKEN = "zendesk-pages-token"
EMAIL = "paula.pages@example.net"
RID = "5d0b7c2e-1f3a-4a9b-8c7d-6e5f4a3b2c1d"


def person() -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    server = FakeZendesk(AGENT, {TOKEN}, limit_per_window=100_000)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskConnector]:
    monkeypatch.setenv("TEST_ZENDESK_EMAIL", AGENT)
    monkeypatch.setenv("TEST_ZENDESK_TOKEN", TOKEN)
    made = ZendeskConnector("zendesk", ZendeskSettings.model_validate(
        {"base_url": fake.url, "email_env": "TEST_ZENDESK_EMAIL", "api_token_env": "TEST_ZENDESK_TOKEN",
         "tickets": "redact"}))
    yield made
    made.close()


def comments(fake: FakeZendesk, ticket_id: int) -> list[dict[str, object]]:
    return list(fake.comments[ticket_id])


def test_comments_on_every_page_are_redacted_and_no_one_elses(fake: FakeZendesk,
                                                               connector: ZendeskConnector) -> None:
    user_id = fake.add_user(EMAIL, name="Paula Pages", tickets=1)
    other = fake.add_user("someone.else@example.net", name="Someone Else")
    ticket_id = fake.tickets_of(user_id)[0]["id"]
    # 2 seeded + 348 more: four pages of 100; the person writes on each of them
    authors = [user_id if n % 3 == 0 else (other if n % 3 == 1 else AGENT_ID) for n in range(348)]
    fake.add_comments(ticket_id, authors)
    theirs = [c for c in comments(fake, ticket_id) if c["author_id"] == user_id]
    pages = {index // 100 for index, c in enumerate(comments(fake, ticket_id)) if c["author_id"] == user_id}
    assert pages == {0, 1, 2, 3} and len(theirs) == 117
    before = {c["id"]: c["html_body"] for c in comments(fake, ticket_id) if c["author_id"] != user_id}

    result = connector.erase(person(), TaskContext(request_id=RID, system="zendesk", attempt=1))

    assert result.status == "erased" and not fake.has_user(EMAIL)
    for comment in comments(fake, ticket_id):
        if comment["author_id"] == user_id:
            text = str(comment["plain_body"])
            assert "from" not in text and "Paula" not in text and set(text.strip()) <= {REDACTED_CHAR, " "}
        else:
            assert comment["html_body"] == before[comment["id"]], "another person's comment is untouched"
    # a second run finds no user left and redacts nothing more
    again = connector.erase(person(), TaskContext(request_id=RID, system="zendesk", attempt=2))
    assert again.status in ("not_found", "erased")


def test_tickets_requested_on_every_page_are_redacted(fake: FakeZendesk, connector: ZendeskConnector) -> None:
    user_id = fake.add_user(EMAIL, name="Paula Pages", tickets=201)  # three pages of tickets
    connector.erase(person(), TaskContext(request_id=RID, system="zendesk", attempt=1))
    left = [t["id"] for t in fake.tickets_of(user_id) if any(
        c["author_id"] == user_id and "Paula" in str(c["plain_body"]) for c in fake.comments[t["id"]])]
    assert left == [], f"{len(left)} ticket(s) keep the person's comment"


def test_the_users_search_is_read_on_every_page(fake: FakeZendesk, connector: ZendeskConnector) -> None:
    # the search matches partial values: 250 others whose e-mail contains the person's come first
    for n in range(250):
        fake.add_user(f"x{n}{EMAIL}")
    fake.add_user(EMAIL)
    result = connector.erase(person(), TaskContext(request_id=RID, system="zendesk", attempt=1))
    assert result.status == "erased" and not fake.has_user(EMAIL)
    assert fake.has_user(f"x0{EMAIL}"), "a partial match is not the person"


def test_the_fake_pages_as_zendesk_documents(fake: FakeZendesk) -> None:
    user_id = fake.add_user(EMAIL, tickets=1)
    ticket_id = fake.tickets_of(user_id)[0]["id"]
    fake.add_comments(ticket_id, [AGENT_ID] * 148)
    url = f"{fake.url}/api/v2/tickets/{ticket_id}/comments.json"
    auth = (f"{AGENT}/token", TOKEN)
    first = requests.get(url, params={"page[size]": 100}, auth=auth, timeout=5).json()
    assert len(first["comments"]) == 100 and first["meta"]["has_more"] is True
    assert "page%5Bafter%5D=" in first["links"]["next"] and "count" not in first
    second = requests.get(url, params={"page[size]": 100, "page[after]": first["meta"]["after_cursor"]},
                          auth=auth, timeout=5).json()
    assert len(second["comments"]) == 50 and second["meta"]["has_more"] is False
    assert second["links"]["next"] is None
    assert {c["id"] for c in first["comments"]}.isdisjoint(c["id"] for c in second["comments"])
    offset = requests.get(url, auth=auth, timeout=5).json()
    assert len(offset["comments"]) == 100 and offset["count"] == 150 and "page=2" in offset["next_page"]
    last = requests.get(url, params={"page": 2}, auth=auth, timeout=5).json()
    assert len(last["comments"]) == 50 and last["next_page"] is None
