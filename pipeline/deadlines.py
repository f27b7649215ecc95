"""GDPR Art. 12(3) deadline arithmetic: one calendar month, clamped to the month's end."""

from __future__ import annotations

from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

DUE_SOON_WINDOW = timedelta(days=7)
MAX_EXTENSION_MONTHS = 2


def add_months(moment: datetime, months: int) -> datetime:
    """Same day `months` later; 31 Jan + 1 month is 28/29 Feb (relativedelta clamps)."""
    return moment + relativedelta(months=months)


def due_at(received_at: datetime, extension_months: int = 0) -> datetime:
    if not 0 <= extension_months <= MAX_EXTENSION_MONTHS:
        raise ValueError(
            f"extension_months must be between 0 and {MAX_EXTENSION_MONTHS}, got {extension_months}"
        )
    return add_months(received_at, 1 + extension_months)


def deadline_flag(due: datetime, now: datetime, finished: bool) -> str | None:
    """`overdue`, `due_soon` or None, for an unfinished request."""
    if finished:
        return None
    if now > due:
        return "overdue"
    if due - now <= DUE_SOON_WINDOW:
        return "due_soon"
    return None
