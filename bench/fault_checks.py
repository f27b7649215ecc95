"""What the fault suite checks after a run (bench/faults.py): each function reads what the run left
behind (ledger, topics, logs) and returns its findings; `Check` says passed or not, and why."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka.admin import KafkaAdminClient

from pipeline.devstack.probes import read_topic
from pipeline.ledger import events_table, open_ledger, requests_table, utc
from pipeline.streaming import topics
from schemas import FINAL_SYSTEM_STATUSES


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def final_states(ledger_url: str, published: list[str]) -> Check:
    """Every published request is in the ledger and no longer in progress."""
    engine = sa.create_engine(ledger_url)
    with engine.connect() as conn:
        rows = {r.request_id: r.status for r in conn.execute(
            sa.select(requests_table.c.request_id, requests_table.c.status))}
    engine.dispose()
    missing = [r for r in published if r not in rows]
    unfinished = [r for r in published if rows.get(r) == "in_progress"]
    statuses = Counter(rows[r] for r in published if r in rows)
    passed = not missing and not unfinished
    return Check("every request reached a final state", passed,
                 f"{len(missing)} never planned, {len(unfinished)} still in progress",
                 {"statuses": dict(statuses), "missing": missing[:5], "unfinished": unfinished[:5]})


def exactly_once(ledger_url: str, published: list[str]) -> Check:
    """One plan, one completion per request and one final outcome per system in the ledger's event log."""
    engine = sa.create_engine(ledger_url)
    with engine.connect() as conn:
        events = conn.execute(sa.select(events_table.c.request_id, events_table.c.system,
                                        events_table.c.kind, events_table.c.status)).all()
    engine.dispose()
    wanted = set(published)
    planned = Counter(e.request_id for e in events if e.kind == "planned" and e.request_id in wanted)
    completed = Counter(e.request_id for e in events if e.kind == "completed" and e.request_id in wanted)
    finals = Counter((e.request_id, e.system) for e in events
                     if e.kind == "outcome" and e.status in FINAL_SYSTEM_STATUSES and e.request_id in wanted)
    problems = ([f"{r}: planned {n} times" for r, n in planned.items() if n != 1]
                + [f"{r}: completed {n} times" for r, n in completed.items() if n != 1]
                + [f"{r} {s}: {n} final outcomes" for (r, s), n in finals.items() if n != 1])
    return Check("each request once in the ledger", not problems,
                 f"{len(problems)} duplicate(s)" if problems else
                 f"{len(planned)} plans, {len(completed)} completions, {len(finals)} final outcomes, "
                 "no duplicate", {"duplicates": problems[:10]})


def chain(ledger_url: str) -> Check:
    """What `erasure ledger verify` checks: every event follows from the one before."""
    ledger = open_ledger(ledger_url)
    try:
        broken = ledger.verify_chain()
    finally:
        ledger.close()
    return Check("the ledger's chain verifies", broken is None,
                 "ledger chain intact" if broken is None else f"chain broken at position {broken}")


def all_topic_names(bootstrap: str) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="erasure-faults")
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


def identities_in_topics(bootstrap: str, emails: list[str]) -> tuple[Check, list[Any]]:
    """Every record of every topic, raw (key, value, headers), searched for the published e-mails.

    Returns the outcomes topic's records too: the lanes' figures come from them."""
    needles = [e.lower().encode() for e in emails]
    found: dict[str, int] = {}
    scanned = 0
    outcomes: list[Any] = []
    for topic in all_topic_names(bootstrap):
        records = read_topic(bootstrap, topic, idle_s=2.0)
        scanned += len(records)
        if topic == topics.OUTCOMES:
            outcomes = records
        for record in records:
            blob = b"\0".join([record.key or b"", record.value or b"",
                               *(v or b"" for _, v in (record.headers or []))]).lower()
            if any(needle in blob for needle in needles):
                found[topic] = found.get(topic, 0) + 1
    detail = (f"{scanned} records in every topic, none with a published e-mail" if not found
              else f"e-mails in clear in {found}")
    return Check("no identity in clear in any topic", not found, detail,
                 {"records_scanned": scanned, "records_with_identity": found}), outcomes


def identities_in_logs(paths: list[Path], emails: list[str]) -> Check:
    needles = [e.lower() for e in emails]
    found = {}
    for path in paths:
        text = path.read_text(errors="replace").lower()
        hits = sum(text.count(n) for n in needles)
        if hits:
            found[path.name] = hits
    return Check("no identity in any log", not found,
                 f"{len(paths)} log files, none with a published e-mail" if not found
                 else f"e-mails in {found}", {"log_files": len(paths)})


def outcome_times(outcomes: list[Any]) -> dict[str, list[float]]:
    """When each system's connector reported an outcome (epoch seconds), by system."""
    times: dict[str, list[float]] = {}
    for record in outcomes:
        try:
            event = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(event, dict) and event.get("event_type") == "erasure.outcome":
            at = datetime.fromisoformat(event["occurred_at"]).timestamp()
            times.setdefault(event["system"], []).append(at)
    return {system: sorted(found) for system, found in times.items()}


def ledger_outcome_times(ledger_url: str) -> dict[str, list[float]]:
    """When each system's connector reported the outcomes the ledger recorded (their `occurred_at`,
    epoch seconds), by system: unlike the topic, the ledger outlives a restart of the broker."""
    engine = sa.create_engine(ledger_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table.c.system, events_table.c.payload)
                            .where(events_table.c.kind == "outcome")).all()
    engine.dispose()
    times: dict[str, list[float]] = {}
    for system, payload in rows:
        try:
            at = datetime.fromisoformat(json.loads(payload)["occurred_at"]).timestamp()
        except (TypeError, ValueError, KeyError):
            continue
        times.setdefault(system, []).append(at)
    return {system: sorted(found) for system, found in times.items()}


def ledger_write_times(ledger_url: str) -> list[float]:
    """When the worker (router/aggregator) recorded each ledger event (epoch seconds)."""
    engine = sa.create_engine(ledger_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table.c.recorded_at)).scalars().all()
    engine.dispose()
    return sorted(utc(r).timestamp() for r in rows)  # type: ignore[union-attr]


def resume_figures(kills: list[float], signs: list[float], broker_back: list[float] | None = None
                   ) -> dict[str, Any]:
    """For one lane: how long after each kill its next sign of work came (its next outcome, ledger write
    or answer), the worst of them, that after the last kill, and that after each return of the
    broker (`broker_back`: when it was up again with its topics)."""
    after = [_next_after(killed_at, signs) for killed_at in kills]
    known = [a for a in after if a is not None]
    return {"kills": len(kills), "resume_after_last_kill_s": after[-1] if after else None,
            "worst_resume_s": max(known) if known else None,
            "never_resumed_after": sum(a is None for a in after),
            "resume_after_broker_return_s": [_next_after(back, signs) for back in broker_back or []]}


def _next_after(at: float, signs: list[float]) -> float | None:
    following = next((s for s in signs if s > at), None)
    return None if following is None else round(following - at, 1)
