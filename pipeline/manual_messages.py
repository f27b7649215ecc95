"""Render the message for a manual system, for an officer, from sealed identities: never stored."""

from __future__ import annotations

import sqlalchemy as sa

from connectors.manual import ManualSettings
from pipeline.crypto import SealError, open_with_data_key
from pipeline.ledger import Ledger, requests_table, utc
from pipeline.register import SystemsRegister
from schemas import SealedIdentities


def manual_message(ledger: Ledger, register: SystemsRegister | None, request_id: str, system: str,
                   ) -> tuple[str, str] | None:
    """(contact, message) for a manual system, or None when it is not one or the key is gone."""
    if register is None or system not in register.ids:
        return None
    entry = register.get(system)
    if entry.connector.type != "manual":
        return None
    settings = entry.connector_settings()
    assert isinstance(settings, ManualSettings)
    key = ledger.data_key(request_id)
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(requests_table).where(requests_table.c.request_id == request_id)).first()
    if key is None or row is None:
        return None
    try:
        subject = open_with_data_key(key, SealedIdentities.model_validate_json(row.sealed_identities))
    except SealError:
        return None
    return settings.contact, settings.render(subject, request_id, f"{utc(row.received_at):%Y-%m-%d}",
                                             f"{utc(row.due_at):%Y-%m-%d}")
