"""Retention rules that justify a legal hold, per data category, and the arithmetic of `retain_until`.

A hold covers only a category a rule names; its end is the rule's duration after
the event that starts its clock (the request, the record's own date, or the end
of the financial year that date falls in).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Literal

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas import Hold

DURATION_PATTERN = re.compile(r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?$")
Clock = Literal["request_received", "record_date", "financial_year_end"]


def parse_duration(text: str) -> relativedelta:
    """ISO 8601 calendar durations in years, months and days: P10Y, P13M, P1Y6M, P30D."""
    match = DURATION_PATTERN.match(text)
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"duration {text!r} is not an ISO 8601 duration like P10Y, P13M or P30D")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return relativedelta(years=parts["years"], months=parts["months"], days=parts["days"])


class RetentionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1, max_length=200)
    citation: str = Field(min_length=1, max_length=200)
    duration: str
    clock: Clock
    description: str | None = None

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class RetentionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[str, str] = Field(
        min_length=1, description="The site's data categories, each with what it holds")
    financial_year_end: str = Field(default="12-31", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
    rules: list[RetentionRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_name_known_categories(self) -> RetentionPolicy:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.category not in self.categories:
                known = ", ".join(sorted(self.categories))
                raise ValueError(f"rules[{index}].category: unknown data category {rule.category!r}; "
                                 f"declare it under 'categories' (known: {known})")
            if rule.category in seen:
                raise ValueError(f"rules[{index}].category: a second rule for {rule.category!r}")
            seen.add(rule.category)
        return self

    def rule(self, category: str) -> RetentionRule | None:
        return next((r for r in self.rules if r.category == category), None)

    def clock_start(self, rule: RetentionRule, received_at: datetime,
                    record_date: datetime | date | None) -> datetime:
        if rule.clock == "request_received" or record_date is None:
            return received_at
        moment = record_date if isinstance(record_date, datetime) else datetime.combine(
            record_date, time.min)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        if rule.clock == "financial_year_end":
            month, day = (int(p) for p in self.financial_year_end.split("-"))
            year_end = moment.replace(month=month, day=day, hour=23, minute=59, second=59, microsecond=0)
            return year_end if year_end >= moment else year_end + relativedelta(years=1)
        return moment

    def retain_until(self, category: str, received_at: datetime,
                     record_date: datetime | date | None = None) -> datetime:
        rule = self.rule(category)
        if rule is None:
            raise KeyError(category)
        return self.clock_start(rule, received_at, record_date) + parse_duration(rule.duration)

    def hold(self, category: str, retain_until: datetime) -> Hold:
        rule = self.rule(category)
        if rule is None:
            raise KeyError(category)
        return Hold(data_category=category, legal_basis=rule.legal_basis, citation=rule.citation,
                    retain_until=retain_until)
