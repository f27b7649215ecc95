"""The tallies the ledger keeps on write (migration 0008): what `figures` reads instead of counting.

Triggers keep `erasure_tallies` in the transaction that changes the rows it counts, whoever writes
them, so the figures read a few dozen rows however large the ledger (see the migration for which
rows count for what). The rows not final yet, each lane's open and overdue ones, are read from a
partial index of their own (`ix_erasure_system_outcomes_open`): few at any time, so counting them is
cheap, and their overdue share depends on the moment asked, which no tally can hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from pipeline.ledger.tables import metadata, systems_table

tallies_table = sa.Table(
    "erasure_tallies", metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # request, system or retry
    sa.Column("system", sa.String(64), primary_key=True),  # '' for a request's state
    sa.Column("label", sa.String(64), primary_key=True),  # a state, a status or a retry's reason
    sa.Column("total", sa.BigInteger, nullable=False),
)
# Each lane's rows not final yet by the time they are expected by (migration 0008). MariaDB has no
# partial index: there it covers every row, `final` first.
sa.Index("ix_erasure_system_outcomes_open", systems_table.c.final, systems_table.c.system,
         systems_table.c.expected_by, postgresql_where=systems_table.c.final.is_(False),
         sqlite_where=systems_table.c.final.is_(False))


@dataclass
class Tallies:
    requests_by_state: dict[str, int] = field(default_factory=dict)
    systems_by_status: dict[str, dict[str, int]] = field(default_factory=dict)
    retries: dict[tuple[str, str], int] = field(default_factory=dict)  # (system, reason) -> attempts


def read_tallies(conn: sa.Connection) -> Tallies:
    """Every tally that is not zero (a state no request is in any more is not reported)."""
    t = tallies_table.c
    tallies = Tallies()
    for scope, system, label, total in conn.execute(
            sa.select(t.scope, t.system, t.label, t.total).where(t.total != 0)):
        if scope == "request":
            tallies.requests_by_state[label] = int(total)
        elif scope == "system":
            tallies.systems_by_status.setdefault(system, {})[label] = int(total)
        elif scope == "retry":
            tallies.retries[(system, label)] = int(total)
    return tallies
