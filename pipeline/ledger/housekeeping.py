"""What the aggregator's timer asks of the ledger: re-drive silent systems, ask for the release
of ended holds, and find completions recorded but never announced."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.retry import RetryPolicy
from pipeline.ledger import dedupe
from pipeline.ledger.chain import lock_head, open_chain
from pipeline.ledger.rebuild import completion_event, task_for
from pipeline.ledger.tables import holds_table, requests_table, system_row_update, systems_table
from schemas import ErasureCompleted, ErasureTask

RELEASE_RETRY_AFTER = timedelta(hours=1)
NON_REDRIVEN_STATUSES = ("manual",)
REDRIVE_CAP_S = 24 * 3600.0
# What a task is rebuilt from, next to the system or hold row it is for.
_TASK_SOURCE = (requests_table.c.received_at, requests_table.c.due_at, requests_table.c.subject_ref,
                requests_table.c.sealed_identities, requests_table.c.scope)
# The end of a hold as the database driver returns it: its spelling is in the hash chain.
_DRIVER_RETAIN_UNTIL = sa.type_coerce(holds_table.c.retain_until, sa.DateTime(timezone=True)).label(
    "driver_retain_until")


def next_redrive_at(now: datetime, due_at: datetime, turnaround_s: float, step: int) -> datetime:
    """When to nudge a silent system again after re-drive number `step` of its silence.

    The one retry policy, its base the system's turnaround: waits of 2, 4, 8... turnarounds
    (at most a day). The last nudge is pulled in to one turnaround before the deadline, so it
    is still answered in time; after it the row waits at the deadline, where re-drives stop:
    the request is overdue, officers are told and act."""
    policy = RetryPolicy(max_attempts=sys.maxsize, base_s=turnaround_s, multiplier=2.0,
                         cap_s=max(turnaround_s, REDRIVE_CAP_S), jitter=False)
    at = policy.next_at(now, step + 1)
    last = due_at - timedelta(seconds=turnaround_s)
    if at < last:
        return at
    return last if now < last else due_at


class Housekeeping:
    def __init__(self, engine: sa.Engine, writer: sa.Engine) -> None:
        self.engine, self.writer = engine, writer

    def redrive_silent(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        """Tasks for planned systems silent past their expected turnaround, next attempt each.

        Only before the request's deadline, on `next_redrive_at`'s schedule. The first re-drive of
        a silent period is a state change (the system went silent) and goes into the hash chain;
        the next ones of the same period only count on the system's row."""
        tasks: list[ErasureTask] = []
        with self.writer.begin() as conn:
            lock_head(conn)  # before reading: a system finished meanwhile is not re-driven
            silent = conn.execute(
                sa.select(systems_table, *_TASK_SOURCE)
                .join(requests_table, requests_table.c.request_id == systems_table.c.request_id)
                .where(systems_table.c.final.is_(False),
                       systems_table.c.status.not_in(NON_REDRIVEN_STATUSES),
                       systems_table.c.expected_by < now,
                       systems_table.c.expected_by < requests_table.c.due_at)
                .limit(max_tasks)).all()
            if not silent:
                return []
            went_silent = [r for r in silent if r.silent_redrives == 0]
            chain = open_chain(conn, [dedupe.redriven(r.request_id, r.system, r.attempt + 1)
                                      for r in went_silent])
            updates = []
            for row in silent:
                attempt, step = row.attempt + 1, row.silent_redrives + 1
                updates.append({"b_request_id": row.request_id, "b_system": row.system,
                                "attempt": attempt, "redrives": row.redrives + 1, "silent_redrives": step,
                                "updated_at": now if step == 1 else row.updated_at,
                                "expected_by": next_redrive_at(now, row.due_at, row.expected_turnaround_s,
                                                               step)})
                tasks.append(task_for(row._mapping, row.system, attempt))
            for row in went_silent:
                chain.append(row.request_id, row.system, "redriven", row.attempt + 1, row.status,
                             {"silent_since": row.updated_at.isoformat()}, now,
                             dedupe.redriven(row.request_id, row.system, row.attempt + 1))
            conn.execute(system_row_update.values(
                {f: sa.bindparam(f) for f in ("attempt", "redrives", "silent_redrives", "updated_at",
                                              "expected_by")}), updates)
            chain.write(conn)
        return tasks

    def request_releases(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        """A release task per (request, system) whose holds have ended, naming those categories."""
        with self.writer.begin() as conn:
            due = conn.execute(
                sa.select(holds_table, _DRIVER_RETAIN_UNTIL, *_TASK_SOURCE, systems_table.c.attempt)
                .join(requests_table, requests_table.c.request_id == holds_table.c.request_id)
                .join(systems_table, sa.and_(systems_table.c.request_id == holds_table.c.request_id,
                                             systems_table.c.system == holds_table.c.system))
                .where(holds_table.c.released_at.is_(None), holds_table.c.retain_until <= now,
                       sa.or_(holds_table.c.release_requested_at.is_(None),
                              holds_table.c.release_requested_at < now - RELEASE_RETRY_AFTER))
                .order_by(holds_table.c.request_id, holds_table.c.system)
                .limit(max_tasks)).all()
            groups: dict[tuple[str, str], list[Any]] = {}
            for row in due:
                groups.setdefault((row.request_id, row.system), []).append(row)
            if not groups:
                return []
            chain = open_chain(conn)
            tasks = []
            for (request_id, system), rows in groups.items():
                attempt = rows[0].attempt + 1
                categories = sorted(r.data_category for r in rows)
                conn.execute(holds_table.update().where(
                    holds_table.c.request_id == request_id, holds_table.c.system == system,
                    holds_table.c.data_category.in_(categories)).values(release_requested_at=now))
                conn.execute(system_row_update.values(attempt=attempt), [
                    {"b_request_id": request_id, "b_system": system}])
                chain.append(request_id, system, "release_requested", attempt, "held",
                             {"categories": categories,
                              "retain_until": str(max(r.driver_retain_until for r in rows))},
                             now, dedupe.release_requested(request_id, system, attempt))
                tasks.append(task_for(rows[0]._mapping, system, attempt, purpose="release",
                                      release_categories=categories))
            chain.write(conn)
        return tasks

    def unpublished_completions(self, completed_before: datetime | None = None) -> list[ErasureCompleted]:
        """Completions recorded but not yet announced (a crash between the two).

        `completed_before` leaves alone the completions the aggregator is announcing right now.
        """
        query = sa.select(requests_table).where(requests_table.c.status != "in_progress",
                                                requests_table.c.completion_published.is_(False))
        if completed_before is not None:
            query = query.where(requests_table.c.completed_at < completed_before)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            result = []
            for request in rows:
                systems = conn.execute(sa.select(systems_table).where(
                    systems_table.c.request_id == request.request_id)).all()
                result.append(completion_event(request._mapping, [s._mapping for s in systems]))
        return result

    def mark_completion_published(self, request_ids: Iterable[str]) -> None:
        ids = list(request_ids)
        if ids:
            with self.writer.begin() as conn:
                conn.execute(requests_table.update().where(requests_table.c.request_id.in_(ids))
                             .values(completion_published=True))
