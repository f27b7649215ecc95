from datetime import UTC, datetime, timedelta

import pytest

from pipeline.deadlines import deadline_flag, due_at


@pytest.mark.parametrize(("received", "due"), [
    (datetime(2026, 1, 31, 9, 0, tzinfo=UTC), datetime(2026, 2, 28, 9, 0, tzinfo=UTC)),
    (datetime(2028, 1, 31, 9, 0, tzinfo=UTC), datetime(2028, 2, 29, 9, 0, tzinfo=UTC)),
    (datetime(2026, 3, 15, 23, 59, tzinfo=UTC), datetime(2026, 4, 15, 23, 59, tzinfo=UTC)),
    (datetime(2026, 12, 31, 0, 0, tzinfo=UTC), datetime(2027, 1, 31, 0, 0, tzinfo=UTC)),
    (datetime(2026, 5, 31, 12, 0, tzinfo=UTC), datetime(2026, 6, 30, 12, 0, tzinfo=UTC)),
])
def test_one_calendar_month_clamped_to_month_end(received: datetime, due: datetime) -> None:
    assert due_at(received) == due


def test_extension_adds_at_most_two_months() -> None:
    received = datetime(2026, 11, 30, tzinfo=UTC)
    assert due_at(received, extension_months=2) == datetime(2027, 2, 28, tzinfo=UTC)
    with pytest.raises(ValueError, match="between 0 and 2"):
        due_at(received, extension_months=3)


def test_flags() -> None:
    due = datetime(2026, 12, 1, tzinfo=UTC)
    assert deadline_flag(due, due + timedelta(seconds=1), finished=False) == "overdue"
    assert deadline_flag(due, due - timedelta(days=3), finished=False) == "due_soon"
    assert deadline_flag(due, due - timedelta(days=20), finished=False) is None
    assert deadline_flag(due, due + timedelta(days=5), finished=True) is None
