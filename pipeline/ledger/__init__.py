"""The ledger: the officers' system of record (SQLAlchemy; SQLite by default, PostgreSQL in production).

It holds requests, per-system outcomes, an append-only hash-chained event log and the key
store of per-request data keys. Its parts: `tables` (schema), `chain` (hash chain),
`dedupe` (event keys), `state` (request state machine), `keystore`, `housekeeping`
(re-drive, releases), `views` (what officers read), `store` (the `Ledger` facade),
`migrations` (Alembic), `accounts` and `actions` (the desk's).
"""

from pipeline.ledger.chain import GENESIS_HASH, chain_hash
from pipeline.ledger.dedupe import completion as completion_key
from pipeline.ledger.housekeeping import NON_REDRIVEN_STATUSES, RELEASE_RETRY_AFTER
from pipeline.ledger.keystore import KeyGrant
from pipeline.ledger.migrations import upgrade
from pipeline.ledger.rebuild import completion_event, task_for
from pipeline.ledger.state import RequestStateMachine
from pipeline.ledger.store import Ledger, open_ledger
from pipeline.ledger.tables import (
    UtcDateTime,
    chain_head_table,
    data_keys_table,
    events_table,
    holds_table,
    metadata,
    notifications_table,
    receipts_table,
    requests_table,
    systems_table,
    utc,
)
from pipeline.ledger.views import RequestView, SystemView

__all__ = [
    "GENESIS_HASH",
    "NON_REDRIVEN_STATUSES",
    "RELEASE_RETRY_AFTER",
    "KeyGrant",
    "Ledger",
    "RequestStateMachine",
    "RequestView",
    "SystemView",
    "UtcDateTime",
    "chain_hash",
    "chain_head_table",
    "completion_event",
    "completion_key",
    "data_keys_table",
    "events_table",
    "holds_table",
    "metadata",
    "notifications_table",
    "open_ledger",
    "receipts_table",
    "requests_table",
    "systems_table",
    "task_for",
    "upgrade",
    "utc",
]
