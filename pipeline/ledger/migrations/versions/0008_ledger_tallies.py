"""Tallies kept on write, so `/metrics`, `erasure status --lanes` and the overview read a few rows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

`erasure_tallies`: how many requests are in each state, how many system rows in each (system,
status), and each system's attempts started again by reason (`processor`: outcome events
`retrying`; `officer`: `officer_retry` events; `silent`: the sum of the rows' re-drive counters).
Triggers keep them in the same transaction as the rows they count, whatever writes them (the state
machine, officers' actions, housekeeping, a bulk load): no writer can forget to. PostgreSQL's are
per statement, over the statement's rows (a batch of plans is one upsert per tally it changes);
SQLite's and MariaDB's per row, and only when a counted column changed. The tallies of a ledger
upgraded to this revision are counted once from its rows (on a million requests, seconds).

`ix_erasure_system_outcomes_open`: the rows not final yet, by system and the time their answer is
expected by (each lane's open and overdue rows). Partial on PostgreSQL and SQLite (only open rows
are indexed); MariaDB has no partial index, so there it is an index over every row led by `final`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TALLIES = "erasure_tallies"
OPEN_INDEX = "ix_erasure_system_outcomes_open"


class Term(NamedTuple):  # (a NamedTuple: alembic loads this file outside sys.modules)
    """One tally a row adds to: SQL over the row (`@.` stands for its alias): scope, system, label,
    amount, and when it counts."""

    scope: str
    system: str
    label: str
    amount: str
    when: str = "1 = 1"


# What each table's rows count for; `changed` lists the columns whose change moves a tally.
RETRY = "@.kind = 'officer_retry' OR (@.kind = 'outcome' AND @.status = 'retrying')"
COUNTED: dict[str, tuple[list[Term], list[str]]] = {
    "erasure_requests": ([Term("request", "''", "@.status", "1")], ["status"]),
    "erasure_system_outcomes": ([Term("system", "@.system", "@.status", "1"),
                                 Term("retry", "@.system", "'silent'", "@.redrives", "@.redrives <> 0")],
                                ["system", "status", "redrives"]),
    "erasure_events": ([Term("retry", "COALESCE(@.system, '')",
                             "CASE WHEN @.kind = 'officer_retry' THEN 'officer' ELSE 'processor' END",
                             "1", RETRY)], ["system", "kind", "status"]),
}


def name_of(table: str, operation: str = "") -> str:
    return f"{table}_tally{'_' + operation if operation else ''}"


def select_terms(terms: Sequence[Term], rows: str, sign: str) -> list[str]:
    return [f"SELECT '{t.scope}' AS scope, {t.system} AS system, {t.label} AS label, "
            f"{sign}1 * ({t.amount}) AS amount FROM {rows} r WHERE {t.when}".replace("@.", "r.")
            for t in terms]


def upsert_from(parts: Sequence[str]) -> str:
    """One upsert of the summed deltas (PostgreSQL), in key order: writers lock tallies in one order."""
    union = " UNION ALL ".join(parts)
    return (f"INSERT INTO {TALLIES} (scope, system, label, total) "
            f"SELECT scope, system, label, SUM(amount) FROM ({union}) AS deltas "
            "GROUP BY scope, system, label HAVING SUM(amount) <> 0 ORDER BY scope, system, label "
            f"ON CONFLICT (scope, system, label) DO UPDATE SET total = {TALLIES}.total + EXCLUDED.total")


def postgres_triggers(table: str, terms: Sequence[Term]) -> list[str]:
    function = name_of(table)
    branches = {"INSERT": select_terms(terms, "new_rows", "+"),
                "DELETE": select_terms(terms, "old_rows", "-"),
                "UPDATE": [*select_terms(terms, "new_rows", "+"), *select_terms(terms, "old_rows", "-")]}
    body = " ".join(f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{op_}' THEN {upsert_from(parts)};"
                    for i, (op_, parts) in enumerate(branches.items()))
    statements = [f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                  f"BEGIN {body} END IF; RETURN NULL; END $$"]
    transitions = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows",
                   "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}
    for operation, referencing in transitions.items():
        statements.append(f"CREATE TRIGGER {name_of(table, operation.lower())} AFTER {operation} ON {table} "
                          f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    return statements


def row_upserts(terms: Sequence[Term], alias: str, sign: str, dialect: str) -> str:
    """Per-row statements (SQLite, MariaDB): each term of the row `alias` (NEW or OLD) added."""
    statements = []
    for t in terms:
        values = (f"SELECT '{t.scope}', {t.system}, {t.label}, {sign}1 * ({t.amount}) WHERE {t.when}"
                  .replace("@.", f"{alias}."))
        if dialect == "sqlite":
            conflict = "ON CONFLICT (scope, system, label) DO UPDATE SET total = total + excluded.total"
        else:
            values = values.replace(" WHERE ", " FROM DUAL WHERE ")
            conflict = "ON DUPLICATE KEY UPDATE total = total + VALUES(total)"
        statements.append(f"INSERT INTO {TALLIES} (scope, system, label, total) {values} {conflict};")
    return " ".join(statements)


def row_triggers(table: str, terms: Sequence[Term], changed: Sequence[str], dialect: str) -> list[str]:
    changes = " OR ".join(f"NOT (OLD.{c} <=> NEW.{c})" if dialect != "sqlite" else f"OLD.{c} IS NOT NEW.{c}"
                          for c in changed)
    added, removed = row_upserts(terms, "NEW", "+", dialect), row_upserts(terms, "OLD", "-", dialect)
    bodies = {"insert": added, "delete": removed, "update": f"{removed} {added}"}
    statements = []
    for operation, body in bodies.items():
        head = f"CREATE TRIGGER {name_of(table, operation)} AFTER {operation.upper()} ON {table} FOR EACH ROW"
        if dialect == "sqlite":
            when = f" WHEN {changes}" if operation == "update" else ""
            statements.append(f"{head}{when} BEGIN {body} END")
        else:
            guarded = f"IF {changes} THEN {body} END IF;" if operation == "update" else body
            statements.append(f"{head} BEGIN {guarded} END")
    return statements


def recount() -> list[str]:
    """The tallies counted from the rows (a ledger written before this revision)."""
    statements = [f"DELETE FROM {TALLIES}"]
    for table, (terms, _) in COUNTED.items():
        for part in select_terms(terms, table, "+"):
            statements.append(f"INSERT INTO {TALLIES} (scope, system, label, total) "
                              f"SELECT scope, system, label, SUM(amount) FROM ({part}) AS counted "
                              "GROUP BY scope, system, label HAVING SUM(amount) <> 0")
    return statements


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.create_table(
        TALLIES,
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
    )
    open_rows = sa.column("final", sa.Boolean).is_(False)
    op.create_index(OPEN_INDEX, "erasure_system_outcomes", ["final", "system", "expected_by"],
                    postgresql_where=open_rows, sqlite_where=open_rows)
    for table, (terms, changed) in COUNTED.items():
        ddl = (postgres_triggers(table, terms) if dialect == "postgresql"
               else row_triggers(table, terms, changed, dialect))
        for statement in ddl:
            op.execute(statement)
    for statement in recount():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    for table in COUNTED:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {name_of(table, operation)}" +
                       (f" ON {table}" if dialect == "postgresql" else ""))
        if dialect == "postgresql":
            op.execute(f"DROP FUNCTION {name_of(table)}()")
    op.drop_index(OPEN_INDEX, table_name="erasure_system_outcomes")
    op.drop_table(TALLIES)
