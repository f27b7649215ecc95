"""One sweep: every rule (or the one named) of every system, read, planned, checked against the ledger."""

from __future__ import annotations

from datetime import datetime

from pipeline.ledger.sweeps import SweepLog
from pipeline.register import SystemEntry, SystemsRegister
from pipeline.sweep.finder import SweepError, SweepFinder, store_url
from pipeline.sweep.plan import RulePlan, plan_rule
from pipeline.sweep.rules import RetentionSweep

Selected = list[tuple[str, SystemEntry, RetentionSweep]]


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
                rule_name: str | None = None) -> list[RulePlan]:
    """What each selected rule covers now, and which of its people were submitted already."""
    plans = []
    finders: dict[str, SweepFinder] = {}
    try:
        for where, entry, rule in select_rules(register, rule_name):
            finder = finders.get(entry.id)
            if finder is None:
                finder = finders[entry.id] = SweepFinder(entry.id, store_url(entry.connector_settings(),
                                                                             entry.id))
            plan = plan_rule(hmac_key, entry.id, rule, finder.rows(rule, where, now))
            plan.already_submitted = sweeps.known([p.request_id for p in plan.people])
            plans.append(plan)
    finally:
        for finder in finders.values():
            finder.close()
    return plans
