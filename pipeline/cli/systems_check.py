"""`erasure systems check`: each system's credentials and permissions, tried without erasing.

Every connector's `check()` makes read-only calls and answers a `connectors.access.AccessReport`
(stores answer a sentence: they reached their database and found their tables). The table says,
per system: ok, UNVERIFIED (reached and let in, but a permission the erasure needs shows only when
erasing) or FAILED, the missing scopes, and notes; below it, what to do for each system not ok,
naming the scope to grant and the variable that holds the credential, never its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from connectors.access import AccessReport, described, from_error, unconfigured
from pipeline import wiring
from pipeline.register import SystemsRegister
from pipeline.settings import Settings
from pipeline.wiring import SetupError


@dataclass(frozen=True)
class Row:
    system: str
    kind: str
    connector_type: str
    report: AccessReport


def check_system(current: Settings, register: SystemsRegister, system: str) -> AccessReport:
    """One system's report; whatever fails (its settings, the network, the credential) is reported."""
    try:
        instance = wiring.build_connectors(current, register, [system])[system]
    except SetupError as exc:
        return unconfigured(str(exc))
    try:
        check = getattr(instance, "check", None)
        if not callable(check):
            return AccessReport(reachable=True, authenticated=True,
                                unverified=["access to the system (its connector has no check call)"],
                                notes="the connector has no check call")
        return described(check())
    except Exception as exc:  # the table reports every system, whatever fails
        return from_error(exc)
    finally:
        instance.close()


def check_all(current: Settings, register: SystemsRegister) -> list[Row]:
    return [Row(entry.id, entry.kind, entry.connector.type, check_system(current, register, entry.id))
            for entry in register.systems]


def table(rows: list[Row]) -> list[str]:
    """The table's lines, then one line of advice per system that is not ok."""
    cells = [("system", "kind", "type", "result", "missing", "notes")]
    cells += [(r.system, r.kind, r.connector_type, r.report.result, ", ".join(r.report.missing) or "-",
               r.report.notes or "-") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
             for row in cells]
    advice = [(r.system, r.report.advice()) for r in rows if r.report.result != "ok"]
    if advice:
        lines += ["", "what to do:"] + [f"  {system}: {text}" for system, text in advice if text]
    return lines


def as_json(rows: list[Row]) -> list[str]:
    """One JSON object per system (for monitoring): the report, its result and its advice."""
    return [json.dumps({"system": r.system, "kind": r.kind, "type": r.connector_type,
                        "result": r.report.result, "advice": r.report.advice(), **r.report.model_dump()})
            for r in rows]
