"""A manual system: the officer sees the message to send, rendered from sealed identities; nothing
of it is stored in clear."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.manual import ManualSettings
from pipeline.crypto import new_data_key, seal_with_data_key
from pipeline.deadlines import due_at
from pipeline.desk.app import Publisher, create_app
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import open_ledger
from pipeline.ledger.accounts import Access
from pipeline.register import SystemsRegister
from schemas import ErasureOutcome, ErasurePlanned, Identity, PlannedTarget, SubjectIdentities
from tests.desk_fixtures import PLAIN_HTTP
from tests.desk_server import login, serve
from tests.fakes.signers import TestSigners

EMAIL = "manual.person@example.test"


def test_officer_sees_the_message_viewer_does_not_and_the_ledger_holds_no_identity(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
    access = Access(ledger)
    access.set_user("olivia", "officer", "officer-password-1", now)
    access.set_user("victor", "viewer", "viewer-password-1", now)
    rid = str(uuid.uuid4())
    key = new_data_key()
    ledger.grant_data_keys({rid: key}, now)
    sealed = seal_with_data_key(key, rid, SubjectIdentities(identities=[
        Identity(identity_type="email", identity_value=EMAIL)]))
    ledger.record([ErasurePlanned(request_id=rid, received_at=now, due_at=due_at(now), subject_ref="sr_m",
                                  identities=sealed, planned_at=now,
                                  targets=[PlannedTarget(system="paper-vendor", expected_turnaround_s=60)]),
                   ErasureOutcome(request_id=rid, system="paper-vendor", attempt=1, status="manual",
                                  occurred_at=now)], now)
    register = SystemsRegister.model_validate({"systems": [{
        "id": "paper-vendor", "kind": "processor", "location": "FR", "data_categories": ["newsletter"],
        "connector": {"type": "manual", "contact": "dpo@paper-vendor.example"}}]})
    publisher = Publisher(lambda *_: None, TestSigners().signer("desk"))
    app = create_app(ledger, access, publisher, None, "s", lambda s: s, "r", register, security=PLAIN_HTTP)
    with serve(app) as url:
        officer_page = login(url, "olivia", "officer-password-1").get(f"/requests/{rid}").text
        viewer_page = login(url, "victor", "viewer-password-1").get(f"/requests/{rid}").text
    assert "Message to send to dpo@paper-vendor.example" in officer_page
    assert EMAIL in officer_page and rid in officer_page
    assert EMAIL not in viewer_page
    with ledger.engine.connect() as conn:
        for table in ("erasure_events", "erasure_requests", "erasure_system_outcomes"):
            assert EMAIL not in str(conn.execute(sa.text(f"SELECT * FROM {table}")).all())
    ledger.close()


def test_template_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{name\}"):
        ManualSettings(contact="dpo@vendor.example", message_template="Please erase {name} now.")
