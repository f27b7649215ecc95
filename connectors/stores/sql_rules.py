"""How an internal SQL store is declared in systems.yaml: its URL and one rule per table.

An `anonymise` rule must anonymise. Overwriting an identity with a value computed from it (a
hash of the e-mail, an encryption, a token, a template of the row) is pseudonymisation (GDPR
Art. 4(5)): whoever holds the identity computes the same value and finds the row again, so it
stays personal data and the person is not erased. Such rules are refused when the register is
loaded, and so is an `anonymise` rule that leaves an identity column it matches on as it was.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.identity import IdentityType

IdentityTypeName = IdentityType
SetValue = str | int | float | bool | None

PSEUDONYMISATION = (
    "replacing data with a value derived from it (a hash, an encryption, a token, a template of "
    "the row) is pseudonymisation, not anonymisation (GDPR Art. 4(5), Recital 26): anyone holding "
    "the identity computes the same value and finds the row again. Set a constant instead (null, "
    "or a fixed word such as 'erased'), or use action 'delete'")
# A template of the row (`{email}`, `${email}`) or a function applied to it (`sha256(email)`).
_TEMPLATE = re.compile(r"\{[^{}]*\}")
_DERIVING_FUNCTION = re.compile(
    r"\b(md5|sha[0-9]*|sha2|hash[a-z_]*|hmac|digest|crypt|encrypt|aes_encrypt|encode|to_hex|hex|"
    r"base64|to_base64|concat|concat_ws|substr|substring|left|right|lower|upper|replace|reverse|"
    r"uuid[0-9_a-z]*|tokeni[sz]e|pseudonymi[sz]e|mask)\s*\(", re.IGNORECASE)


class Via(BaseModel):
    """Rows found through a parent row: `column` of this table refers to `key` of `table`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    key: str = Field(min_length=1)
    column: str = Field(min_length=1)
    match: dict[IdentityTypeName, str] = Field(min_length=1)


def derived_value_problem(column: str, value: Any) -> str | None:
    """Why `value` for `column` is not a constant, or None when it is one."""
    if isinstance(value, dict | list):
        return f"set.{column} is a computed value ({type(value).__name__}), not a constant"
    if isinstance(value, str) and _TEMPLATE.search(value):
        return f"set.{column} is a template of the row ({{...}}), not a constant"
    if isinstance(value, str) and _DERIVING_FUNCTION.search(value):
        return f"set.{column} applies a function to the data, it is not a constant"
    return None


class TableRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    match: dict[IdentityTypeName, str] = Field(
        default_factory=dict, description="identity type -> column holding it"
    )
    via: Via | None = Field(default=None, description="Or: find the rows through a parent table")
    action: Literal["delete", "anonymise", "hold"]
    category: str | None = Field(default=None, description="The data category the rows hold")
    # Any shape is read so that a computed value is refused with the reason, not a type error.
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="anonymise (or hold in place): column -> a constant replacement (null allowed)",
    )
    hold_mode: Literal["mark", "archive"] = Field(
        default="archive", description="hold: mark rows in place, or move them to the restricted archive")
    retain_until_column: str = Field(default="retain_until", description="hold_mode mark: the column set")
    clock_column: str | None = Field(
        default=None, description="The row's date that starts the retention clock (record_date clocks)")

    @model_validator(mode="after")
    def _consistent(self) -> TableRule:
        if not self.match and self.via is None:
            raise ValueError("give 'match' (identity type -> column) or 'via' (a parent table)")
        if self.action == "anonymise" and not self.set:
            raise ValueError("action 'anonymise' needs 'set': the columns to overwrite")
        if self.action == "delete" and self.set:
            raise ValueError("'set' only applies to actions 'anonymise' and 'hold'")
        if self.action == "hold" and not self.category:
            raise ValueError("action 'hold' needs 'category': the retention rule that justifies it")
        if self.action == "hold" and self.hold_mode == "archive" and self.set:
            raise ValueError("'set' does not apply to rows moved to the archive")
        self._anonymises()
        return self

    def _anonymises(self) -> None:
        for column, value in self.set.items():
            problem = derived_value_problem(column, value)
            if problem is not None:
                raise ValueError(f"{problem}: {PSEUDONYMISATION}")
        if self.action != "anonymise":
            return
        kept = [f"{column!r} (its {kind})" for kind, column in self.match.items() if column not in self.set]
        if kept:
            raise ValueError(
                f"action 'anonymise' leaves {', '.join(kept)} as it is: the rows would still carry the "
                "identity they were found by, so nothing is anonymised; add the column to 'set' with a "
                "constant (null, or a fixed word), or use action 'delete'")


class SqlStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="A URL without secrets, e.g. sqlite:///site.db")
    url_env: str | None = Field(default=None, description="Environment variable holding the URL")
    tables: list[TableRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_url(self) -> SqlStoreSettings:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' and 'url_env'")
        return self

    def hold_categories(self) -> list[tuple[str, str]]:
        return [(f"tables[{i}].category", r.category) for i, r in enumerate(self.tables)
                if r.action == "hold" and r.category]

    def identity_columns(self) -> list[tuple[str, IdentityTypeName, str]]:
        """(table, identity type, column) of every column a rule finds people by, parents included."""
        found: set[tuple[str, IdentityTypeName, str]] = set()
        for rule in self.tables:
            found.update((rule.table, kind, column) for kind, column in rule.match.items())
            if rule.via is not None:
                found.update((rule.via.table, kind, column) for kind, column in rule.via.match.items())
        return sorted(found)
