"""The identity types a person may be known by: the one definition the pipeline and connectors use.

The Literal is the source (pydantic validates against it, mypy checks every use);
the tuple is derived from it for the places that list or iterate the types.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

IdentityType = Literal["email", "phone", "user_id", "account_id", "customer_id"]
IDENTITY_TYPES: Final[tuple[IdentityType, ...]] = get_args(IdentityType)


def normalised_value(identity_type: str, value: str) -> str:
    """The form two spellings of one identity share: e-mails case-folded, phones digits and `+` only."""
    value = value.strip()
    if identity_type == "email":
        return value.lower()
    if identity_type == "phone":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value
