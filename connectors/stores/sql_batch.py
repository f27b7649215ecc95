"""Many people erased from an internal SQL store in one transaction, a few statements per rule.

Per rule: one statement finds which rows match anyone of the batch (and whose they are), one
deletes or anonymises them all (`WHERE column IN (...)`); a hold reads the rows, then writes them
in a few statements per end date. Each row is counted for the first person of the batch it
matches, as if the batch had been erased one person after the other in its order (the second
person sharing a row finds it gone). Rows found through a parent are attributed through the
parent's key; the parents' keys are read once per batch until a rule writes the parent table.

A row the store matched that no person of the batch claims (a collation that compares
differently from Python: accents, trailing spaces) raises `Unattributable`: the caller then
erases the batch one person at a time, so evidence is never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.base import BatchItem, PermanentError
from connectors.stores.sql_rules import IdentityTypeName, TableRule
from connectors.stores.sql_store import SqlStoreConnector, archive_table, as_date
from schemas import Hold

# Keys per `IN (...)` list: under SQLite's older limit of 999 parameters per statement.
KEYS_PER_STATEMENT = 500


class Unattributable(Exception):
    """A matched row belongs to nobody of the batch by Python's comparison of its identity values."""


def normalised(identity_type: IdentityTypeName, value: Any) -> str:
    """An identity value as the store compares it: e-mail addresses case-insensitively."""
    text = str(value)
    return text.lower() if identity_type == "email" else text


@dataclass
class Matcher:
    """The batch's identity values for one rule's match columns, and whose each value is."""

    match: Mapping[IdentityTypeName, str]
    values: dict[IdentityTypeName, list[str]] = field(default_factory=dict)
    owners: dict[tuple[IdentityTypeName, str], int] = field(default_factory=dict)
    present: set[int] = field(default_factory=set)  # the items having a value to match here

    @classmethod
    def of(cls, items: Sequence[BatchItem], match: Mapping[IdentityTypeName, str]) -> Matcher:
        matcher = cls(match)
        for index, item in enumerate(items):
            for identity in item.subject.identities:
                if identity.identity_type not in match:
                    continue
                value = normalised(identity.identity_type, identity.identity_value.strip())
                matcher.present.add(index)
                if (identity.identity_type, value) not in matcher.owners:
                    matcher.owners[(identity.identity_type, value)] = index
                    matcher.values.setdefault(identity.identity_type, []).append(value)
        return matcher

    def owner(self, row: Mapping[Any, Any]) -> int:
        """The first item of the batch whose values the row's match columns hold."""
        found = [self.owners.get((kind, normalised(kind, row[column])))
                 for kind, column in self.match.items() if row.get(column) is not None]
        owners = [index for index in found if index is not None]
        if not owners:
            raise Unattributable()
        return min(owners)


@dataclass
class Found:
    """A rule's rows for the batch: the condition, the columns that tell whose a row is, and how."""

    condition: Any  # None: nobody of the batch has a row here
    columns: list[sa.Column[Any]]
    owner: Callable[[Mapping[Any, Any]], int]
    present: set[int]


class BatchErasure:
    """One batch in one transaction: per item, the rows affected and the holds (category -> hold)."""

    def __init__(self, store: SqlStoreConnector, connection: sa.Connection,
                 items: Sequence[BatchItem]) -> None:
        self.store = store
        self.connection = connection
        self.items = items
        self.affected = [0] * len(items)
        self.held: list[dict[str, datetime]] = [{} for _ in items]
        self._parents: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[Any, int]] = {}

    def run(self) -> list[tuple[int, dict[str, Hold]]]:
        for rule in self.store.settings.tables:
            table = self.store._table(rule.table, self.connection)
            found = self._found(table, rule)
            if found is None:
                continue
            if rule.action == "hold":
                self._hold(table, rule, found)
            else:
                self._write(table, rule, found)
            self._parents = {k: v for k, v in self._parents.items() if k[0] != rule.table}
        return [(affected, self._holds(index)) for index, affected in enumerate(self.affected)]

    # -- which rows, whose ------------------------------------------------------------------
    def _found(self, table: sa.Table, rule: TableRule) -> Found | None:
        if rule.via is None:
            matcher = Matcher.of(self.items, rule.match)
            condition = self.store._values_condition(table, rule, matcher.values)
            if condition is None:
                return None
            columns = [self.store._column(table, rule, c) for c in rule.match.values()]
            return Found(condition, columns, matcher.owner, matcher.present)
        keys, present = self._parent_keys(rule)
        column = self.store._column(table, rule, rule.via.column)
        if not present:
            return None

        def owner(row: Mapping[Any, Any]) -> int:
            if row[column.name] not in keys:
                raise Unattributable()
            return keys[row[column.name]]

        return Found(column.in_(list(keys)) if keys else None, [column], owner, present)

    def _parent_keys(self, rule: TableRule) -> tuple[dict[Any, int], set[int]]:
        """The batch's parent rows: key -> the first item they belong to; and who has a value here."""
        assert rule.via is not None
        via = rule.via
        parent = self.store._table(via.table, self.connection)
        parent_rule = TableRule(table=via.table, match=via.match, action="delete")
        matcher = Matcher.of(self.items, via.match)
        cache_key = (via.table, via.key, tuple(sorted(via.match.items())))
        if cache_key in self._parents:
            return self._parents[cache_key], matcher.present
        condition = self.store._values_condition(parent, parent_rule, matcher.values)
        keys: dict[Any, int] = {}
        if condition is not None:
            key = self.store._column(parent, parent_rule, via.key)
            columns = [self.store._column(parent, parent_rule, c) for c in via.match.values()]
            for row in self.connection.execute(sa.select(key, *columns).where(condition)):
                owner = matcher.owner(row._mapping)
                keys[row._mapping[key.name]] = min(owner, keys.get(row._mapping[key.name], owner))
        self._parents[cache_key] = keys
        return keys, matcher.present

    # -- delete, anonymise --------------------------------------------------------------------
    def _write(self, table: sa.Table, rule: TableRule, found: Found) -> None:
        if found.condition is None:
            return
        counts = sa.select(*found.columns, sa.func.count()).where(found.condition).group_by(*found.columns)
        matched = 0
        for row in self.connection.execute(counts):
            self.affected[found.owner(row._mapping)] += row[-1]
            matched += row[-1]
        if not matched:
            return
        if rule.action == "delete":
            self.connection.execute(sa.delete(table).where(found.condition))
            return
        for column in rule.set:
            self.store._column(table, rule, column)
        self.connection.execute(sa.update(table).where(found.condition).values(**rule.set))

    # -- hold ----------------------------------------------------------------------------------
    def _hold(self, table: sa.Table, rule: TableRule, found: Found) -> None:
        category = rule.category or ""
        for index in sorted(found.present):  # as one person's erasure would, before any row is read
            policy = self.items[index].context.retention
            if policy is None or policy.rule(category) is None:
                raise PermanentError(self.store.system, f"no retention rule for category {category!r}: "
                                                        "nothing may be held without one")
        condition = found.condition
        if condition is None:
            return
        if rule.hold_mode == "mark":
            marker = self.store._column(table, rule, rule.retain_until_column)
            condition = sa.and_(condition, marker.is_(None))  # held already: nothing changes
        rows = [dict(r._mapping) for r in self.connection.execute(sa.select(table).where(condition))]
        if not rows:
            return
        keys = list(table.primary_key.columns)
        if not keys:
            raise PermanentError(self.store.system, f"table {rule.table!r} needs a primary key to hold rows")
        plan = HoldPlan(self.store.clock())
        for row in rows:
            index = found.owner(row)
            until = self._until(table, rule, row, index)
            self.affected[index] += 1
            if plan.add(row, until, self.items[index].context.request_id):
                held = self.held[index]
                held[category] = max(until, held.get(category, until))
        plan.write(self.connection, table, rule, keys)

    def _until(self, table: sa.Table, rule: TableRule, row: Mapping[Any, Any], index: int) -> datetime:
        context = self.items[index].context
        assert context.retention is not None  # checked in `_hold`
        clock = self.store._column(table, rule, rule.clock_column) if rule.clock_column else None
        record_date = as_date(row.get(clock.name)) if clock is not None else None
        received_at = context.received_at or self.store.clock()
        return context.retention.retain_until(rule.category or "", received_at, record_date)

    def _holds(self, index: int) -> dict[str, Hold]:
        policy = self.items[index].context.retention
        if policy is None:
            return {}
        return {category: policy.hold(category, until) for category, until in self.held[index].items()}


@dataclass
class HoldPlan:
    """The writes of one hold rule over the batch's rows, grouped into few statements."""

    now: datetime
    expired: list[dict[str, Any]] = field(default_factory=list)
    marked: dict[datetime, list[dict[str, Any]]] = field(default_factory=dict)
    archived: list[tuple[dict[str, Any], datetime, str]] = field(default_factory=list)

    def add(self, row: dict[str, Any], until: datetime, request_id: str) -> bool:
        """Plan the row's write; whether it is held (its retention period not over yet)."""
        if until <= self.now:  # its retention period is already over: nothing justifies keeping it
            self.expired.append(row)
            return False
        self.marked.setdefault(until, []).append(row)
        self.archived.append((row, until, request_id))
        return True

    def write(self, connection: sa.Connection, table: sa.Table, rule: TableRule,
              keys: list[sa.Column[Any]]) -> None:
        for chunk in _chunks(self.expired):
            connection.execute(sa.delete(table).where(_rows_in(keys, chunk)))
        if rule.hold_mode == "mark":
            for until, rows in self.marked.items():
                for chunk in _chunks(rows):
                    connection.execute(sa.update(table).where(_rows_in(keys, chunk)).values(
                        **{rule.retain_until_column: until, **rule.set}))
            return
        if not self.archived:
            return
        connection.execute(archive_table.insert(), [
            {"request_id": request_id, "source_table": rule.table, "data_category": rule.category,
             "retain_until": until, "archived_at": self.now,
             "row_data": json.dumps(row, default=str, sort_keys=True)}
            for row, until, request_id in self.archived])
        for chunk in _chunks([row for row, _, _ in self.archived]):
            connection.execute(sa.delete(table).where(_rows_in(keys, chunk)))


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), KEYS_PER_STATEMENT):
        yield rows[start:start + KEYS_PER_STATEMENT]


def _rows_in(keys: list[sa.Column[Any]], rows: list[dict[str, Any]]) -> Any:
    """These rows, by primary key."""
    if len(keys) == 1:
        return keys[0].in_([row[keys[0].name] for row in rows])
    return sa.tuple_(*keys).in_([tuple(row[k.name] for k in keys) for row in rows])
