"""One sweep: every rule (or the one named) of every system, read, planned, checked against the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice

from pipeline.ledger.sweeps import SweepLog
from pipeline.register import SystemEntry, SystemsRegister
from pipeline.sweep.finder import CHUNK_ROWS, SweepError, SweepFinder, SweptRow, store_url
from pipeline.sweep.plan import Count, CoveredPeople, RowChunks, RulePlan
from pipeline.sweep.rules import RetentionSweep

Selected = list[tuple[str, SystemEntry, RetentionSweep]]


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _reader(finder: SweepFinder, rule: RetentionSweep, where: str, now: datetime,
            chunk_rows: int) -> RowChunks:
    """One read of the rule's rows, chunk by chunk; the store's connections given back after it
    (a sweep submits for hours: it holds no idle connection in between)."""
    def read() -> Iterator[list[SweptRow]]:
        try:
            yield from finder.chunks(rule, where, now, chunk_rows)
        finally:
            finder.close()  # the engine stays usable: a later read opens a new pool
    return read


def select_rules(register: SystemsRegister, rule_name: str | None) -> Selected:
    """(key in systems.yaml, system, rule) of every rule, or of the one named."""
    selected = [(f"systems[{index}].retention_sweeps[{position}]", entry, rule)
                for index, entry in enumerate(register.systems)
                for position, rule in enumerate(entry.retention_sweeps)
                if rule_name is None or rule.name == rule_name]
    if rule_name is not None and not selected:
        declared = [r.name for e in register.systems for r in e.retention_sweeps]
        raise SweepError(f"no retention sweep named {rule_name!r} in the register "
                         f"(declared: {', '.join(declared) or 'none'})")
    return selected


def plan_sweeps(register: SystemsRegister, hmac_key: bytes, sweeps: SweepLog, now: datetime,
                rule_name: str | None = None, chunk_rows: int = CHUNK_ROWS) -> list[RulePlan]:
    """What each selected rule covers now, and how many of its people were submitted already.

    The plans count; their people are read from the store again, `chunk_rows` rows at a time,
    as they are submitted (the finders' connections are given back in between)."""
    plans = []
    finders: dict[str, SweepFinder] = {}
    try:
        for where, entry, rule in select_rules(register, rule_name):
            finder = finders.get(entry.id)
            if finder is None:
                finder = finders[entry.id] = SweepFinder(entry.id, store_url(entry.connector_settings(),
                                                                             entry.id))
            people = CoveredPeople(hmac_key, entry.id, rule, _reader(finder, rule, where, now, chunk_rows))
            submitted = sum(len(sweeps.known(ids)) for ids in batched(people.request_ids(), chunk_rows))
            plans.append(RulePlan(entry.id, rule, people, people.unusable_rows, Count(submitted)))
    finally:
        for finder in finders.values():
            finder.close()
    return plans
