"""Notifications for the contact-form backend: a request completed, or became overdue.

Each is recorded in the ledger (so none is lost), published on
`erasure.notifications.v1`, and POSTed to `ERASURE_WEBHOOK_URL` when set, signed
like Stripe's webhooks: `X-Erasure-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with ERASURE_WEBHOOK_SECRET>`. Undelivered webhooks are retried with
backoff. No notification carries personal data.

Letters go the same way. A request that completes (without a failed system), is refused, or has its
deadline extended owes the person a letter: a notice of kind `letter` in the same table (queued by
the officer action, or here for a completion), delivered to the webhook as an `erasure.letter` event
(`pipeline.letters.event`) rendered from the ledger at delivery, in French and in English, signed the
same way. A letter that can no longer be written (its reason erased, the request reopened) is given
up with the reason in `last_error`; the others are retried like notifications.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import datetime

import requests
import sqlalchemy as sa

from connectors.retry import RetryPolicy
from pipeline.ledger import Ledger, notifications_table, requests_table, utc
from pipeline.ledger.actions import LETTER_NOTICE
from pipeline.letters import ErasureLetter, LetterError, LetterKind, LetterWriter
from schemas import ErasureNotification

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Erasure-Signature"
NOTIFICATION_KINDS = ("completed", "overdue")  # rows that are `ErasureNotification`s; the rest: letters
FINISHED = ("completed", "completed_with_holds")
MAX_ATTEMPTS = 12
TOLERANCE_S = 300
# 10 s after the first failed delivery, doubling up to an hour; `pending` stops at MAX_ATTEMPTS.
WEBHOOK_RETRY = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_s=5, multiplier=2, cap_s=3600, jitter=False)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, now_s: float | None = None) -> bool:
    """For receivers: check the signature and that it is recent (replays are refused)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now_s if now_s is not None else time.time()) - timestamp) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def flag_overdue(ledger: Ledger, now: datetime) -> int:
    """One `overdue` notification per request past its deadline and still unfinished."""
    with ledger.writer.begin() as conn:
        rows = conn.execute(sa.select(requests_table.c.request_id, requests_table.c.due_at,
                                      requests_table.c.status)
                            .where(requests_table.c.status == "in_progress", requests_table.c.due_at < now)
                            .limit(1000)).all()
        ids = [f"{r.request_id}:overdue:{utc(r.due_at).isoformat()}" for r in rows]  # type: ignore[union-attr]
        known = set(conn.execute(sa.select(notifications_table.c.notification_id).where(
            notifications_table.c.notification_id.in_(ids))).scalars()) if ids else set()
        fresh = [{"notification_id": nid, "request_id": r.request_id, "kind": "overdue",
                  "status": r.status, "due_at": r.due_at, "created_at": now, "next_attempt_at": now,
                  "attempts": 0} for nid, r in zip(ids, rows, strict=True) if nid not in known]
        if fresh:
            conn.execute(notifications_table.insert(), fresh)
    return len(fresh)


def pending(ledger: Ledger, now: datetime, limit: int = 2000) -> list[ErasureNotification]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(notifications_table).where(
            notifications_table.c.kind.in_(NOTIFICATION_KINDS),
            notifications_table.c.delivered_at.is_(None),
            notifications_table.c.attempts < MAX_ATTEMPTS,
            notifications_table.c.next_attempt_at <= now).order_by(
            notifications_table.c.created_at).limit(limit)).all()
    return [ErasureNotification(notification_id=r.notification_id, request_id=r.request_id, kind=r.kind,
                                status=r.status, due_at=utc(r.due_at),  # type: ignore[arg-type]
                                occurred_at=utc(r.created_at)) for r in rows]  # type: ignore[arg-type]


def mark_delivered(ledger: Ledger, notification_ids: list[str], now: datetime) -> None:
    """Many delivered at once (no webhook, or each POST answered): one statement."""
    if notification_ids:
        with ledger.writer.begin() as conn:
            conn.execute(notifications_table.update().where(
                notifications_table.c.notification_id.in_(notification_ids)).values(
                delivered_at=now, attempts=notifications_table.c.attempts + 1, last_error=None))


def mark(ledger: Ledger, notification_id: str, now: datetime, error: str | None) -> None:
    with ledger.writer.begin() as conn:
        attempts = conn.execute(sa.select(notifications_table.c.attempts).where(
            notifications_table.c.notification_id == notification_id)).scalar_one() + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["delivered_at"] = now
        else:
            # backoff_s(n) is base * 2^(n-1): attempt + 1 keeps the wait after `attempts` failures
            # at 5 * 2^attempts seconds.
            values["next_attempt_at"] = WEBHOOK_RETRY.next_at(now, attempts + 1)
        conn.execute(notifications_table.update().where(
            notifications_table.c.notification_id == notification_id).values(**values))


def post_webhook(url: str, secret: str, notification: ErasureNotification | ErasureLetter,
                 timeout_s: float = 10) -> None:
    body = notification.model_dump_json().encode()
    response = requests.post(url, data=body, timeout=timeout_s, headers={
        "content-type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time()))})
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered HTTP {response.status_code}")


def queue_completion_letters(ledger: Ledger, now: datetime) -> int:
    """A completion letter for each completion not announced yet whose request ended without failure.

    Run before the notifications go out, so each completion gets its letter once, and a ledger that
    completed requests before letters existed sends none for them."""
    n = notifications_table
    with ledger.writer.begin() as conn:
        letter = n.alias("letter")
        queued = sa.exists().where(letter.c.notification_id == n.c.notification_id + ":letter")
        rows = conn.execute(sa.select(n.c.notification_id, n.c.request_id, n.c.due_at)
                            .join(requests_table, requests_table.c.request_id == n.c.request_id)
                            .where(n.c.kind == "completed", n.c.delivered_at.is_(None),
                                   n.c.status.in_(FINISHED), requests_table.c.status.in_(FINISHED),
                                   ~queued)
                            .limit(1000)).all()
        if rows:
            conn.execute(n.insert(), [{
                "notification_id": f"{r.notification_id}:letter", "request_id": r.request_id,
                "kind": LETTER_NOTICE, "status": "completion", "due_at": r.due_at, "created_at": now,
                "next_attempt_at": now, "attempts": 0} for r in rows])
    return len(rows)


def pending_letters(ledger: Ledger, now: datetime, limit: int = 500) -> list[tuple[str, str, LetterKind]]:
    """Letter notices due for delivery: (notice id, request id, the letter's kind)."""
    n = notifications_table
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(n.c.notification_id, n.c.request_id, n.c.status).where(
            n.c.kind == LETTER_NOTICE, n.c.delivered_at.is_(None), n.c.attempts < MAX_ATTEMPTS,
            n.c.next_attempt_at <= now).order_by(n.c.created_at).limit(limit)).all()
    return [(r.notification_id, r.request_id, r.status) for r in rows]


def give_up(ledger: Ledger, notification_id: str, reason: str) -> None:
    with ledger.writer.begin() as conn:
        conn.execute(notifications_table.update().where(
            notifications_table.c.notification_id == notification_id).values(
            attempts=MAX_ATTEMPTS, last_error=reason[:200]))


def deliver_letters(ledger: Ledger, url: str, secret: str, writer: LetterWriter, now: datetime) -> int:
    """Render each letter due and POST it, signed; how many were delivered."""
    delivered = 0
    for notice_id, request_id, kind in pending_letters(ledger, now):
        try:
            letter = writer.event(ledger, request_id, kind, notice_id, now)
        except LetterError as exc:
            log.warning("letters: %s given up: %s", notice_id, exc)
            give_up(ledger, notice_id, str(exc))
            continue
        try:
            post_webhook(url, secret, letter)
        except Exception as exc:  # retried later, with backoff
            mark(ledger, notice_id, now, f"{type(exc).__name__}: {str(exc)[:150]}")
            continue
        mark(ledger, notice_id, now, None)
        delivered += 1
    return delivered
