"""The ledger: the officers' system of record (SQLAlchemy; SQLite by default, PostgreSQL in production).

It holds requests, per-system outcomes, an append-only hash-chained event log and the key
store of per-request data keys. Its parts: `tables` (schema), `chain` (hash chain),
`dedupe` (event keys), `state` (request state machine), `keystore`, `housekeeping`
(re-drive, releases), `views` (what officers read), `store` (the `Ledger` facade),
`migrations` (Alembic), `accounts` and `actions` (the desk's).

The names below are imported from their part when first used (PEP 562), so that importing one
part (`pipeline.ledger.views` for `erasure status`) does not import every other (the state
machine, the event contracts, the key store).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# name -> (its part, its name there)
_EXPORTS: dict[str, tuple[str, str]] = {
    "GENESIS_HASH": ("chain", "GENESIS_HASH"),
    "chain_hash": ("chain", "chain_hash"),
    "completion_key": ("dedupe", "completion"),
    "NON_REDRIVEN_STATUSES": ("housekeeping", "NON_REDRIVEN_STATUSES"),
    "RELEASE_RETRY_AFTER": ("housekeeping", "RELEASE_RETRY_AFTER"),
    "KeyGrant": ("keystore", "KeyGrant"),
    "upgrade": ("migrations", "upgrade"),
    "completion_event": ("rebuild", "completion_event"),
    "task_for": ("rebuild", "task_for"),
    "RequestStateMachine": ("state", "RequestStateMachine"),
    "Ledger": ("store", "Ledger"),
    "open_ledger": ("store", "open_ledger"),
    **{name: ("tables", name) for name in (
        "UtcDateTime", "chain_head_table", "data_keys_table", "events_table", "holds_table", "metadata",
        "notifications_table", "receipts_table", "requests_table", "systems_table", "utc")},
    "RequestView": ("views", "RequestView"),
    "SystemView": ("views", "SystemView"),
}

__all__ = [  # what _EXPORTS names, spelt out for the type checker and the linters
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


def __getattr__(name: str) -> Any:
    try:
        part, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(f"{__name__}.{part}"), attribute)
    globals()[name] = value  # once: later reads do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
