"""Retention sweeps as systems.yaml declares them: which rows of the site's own store have outlived
their purpose (storage limitation, GDPR Art. 5(1)(e)), and a period parser shared with
`backup_retention`.

A rule is declarative on purpose: a table, the columns holding the person's identities, a date
column and a period, and optional equality filters. No SQL text is ever read from the file: the
query is built from checked identifiers, values travel as bound parameters, and it runs in a
read-only transaction.
"""

from __future__ import annotations

import re

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.identity import IdentityType
from schemas.models import SYSTEM_ID_PATTERN

# Plain SQL identifiers only: nothing that needs quoting, nothing that could carry SQL.
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
RULE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
_ISO_PERIOD = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?$")
_SHORT_PERIOD = re.compile(r"^(?P<count>\d+)\s*(?P<unit>[dwy])$")
_SHORT_UNITS = {"d": "days", "w": "weeks", "y": "years"}


def parse_period(text: str) -> relativedelta:
    """A calendar period: ISO 8601 (P35D, P5W, P3Y, P1Y6M) or short (35d, 5w, 3y); never zero."""
    spelled = text.strip()
    short = _SHORT_PERIOD.match(spelled)
    if short:
        parts = {_SHORT_UNITS[short["unit"]]: int(short["count"])}
    else:
        iso = _ISO_PERIOD.match(spelled)
        if not iso or not any(iso.groupdict().values()):
            raise ValueError(f"{text!r} is not a period: write it in ISO 8601 (P35D, P5W, P3Y, P1Y6M) "
                             "or as days, weeks or years (35d, 5w, 3y)")
        parts = {k: int(v or 0) for k, v in iso.groupdict().items()}
    period = relativedelta(**parts)  # type: ignore[arg-type]
    if not any(parts.values()):
        raise ValueError(f"{text!r} is an empty period: give a length")
    return period


class OlderThan(BaseModel):
    """The row's date that says when it stopped being needed, and how long ago that must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(pattern=COLUMN_PATTERN, description="e.g. last_login_at")
    fallback_column: str | None = Field(
        default=None, pattern=COLUMN_PATTERN,
        description="Used where `column` is null, e.g. created_at for accounts that never logged in")
    period: str = Field(description="ISO 8601 (P3Y) or short (3y, 26w, 90d)")

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)
        return value


class RetentionSweep(BaseModel):
    """One retention rule of the site's own store: the people it covers are erased on schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=RULE_NAME_PATTERN, description="Unique in the register, e.g. inactive-accounts")
    description: str = Field(min_length=1, max_length=200,
                             description="What the rule covers, for officers: the retention policy's words")
    table: str = Field(pattern=TABLE_PATTERN)
    identities: dict[IdentityType, str] = Field(
        min_length=1, description="identity type -> column holding it: who each row is")
    older_than: OlderThan
    where: dict[str, str | int | bool | None] = Field(
        default_factory=dict, description="column -> value the row must have (null: IS NULL)")
    systems: list[str] | None = Field(
        default=None, description="Erase the person from these systems only (default: every system)")

    @model_validator(mode="after")
    def _identifiers(self) -> RetentionSweep:
        columns = {f"identities.{kind}": column for kind, column in self.identities.items()}
        columns.update({f"where.{column}": column for column in self.where})
        for key, column in columns.items():
            if not re.fullmatch(COLUMN_PATTERN, column):
                raise ValueError(f"{key}: {column!r} is not a plain column name (letters, digits, _)")
        for system in self.systems or []:
            if not re.fullmatch(SYSTEM_ID_PATTERN, system):
                raise ValueError(f"systems: {system!r} is not a system id")
        if self.systems == []:
            raise ValueError("systems: an empty list erases nothing; leave it out to mean every system")
        return self
