"""The identity types a person may be known by, and what a valid value of each looks like.

The Literal is the source (pydantic validates against it, mypy checks every use);
the tuple is derived from it for the places that list or iterate the types.

Each type has one strict definition, checked at every door (the contract, the
intake client, `erasure submit`, the router after opening the envelope). A value
reaches paths, URLs and key patterns downstream, so the definitions are chosen to
exclude what can change their shape:

- `email`: a practical subset of RFC 5321/5322: an ASCII dot-atom local part of at
  most 64 characters, `@`, a domain of at least two LDH labels (letters, digits,
  inner hyphens; internationalised domains in their `xn--` form); 254 characters in
  all. Quoted local parts, IP-literal domains, non-ASCII and `/` are refused: `/`
  is legal in a local part but a path separator everywhere else, and addresses
  holding one are vanishingly rare.
- `phone`: E.164: `+`, then 8 to 15 digits, the first not 0; spaces, dots, hyphens
  and parentheses between the digits are allowed and dropped by normalisation.
- `user_id`, `account_id`, `customer_id`: 1 to 128 characters of letters, digits
  and `_ - . @ |`, with at least one letter or digit (so never `.`, `..` or blank).
  `@` lets a site use an e-mail as its id and `|` is Auth0's `provider|id`. Refused:
  `/` and `\\` (path separators), `:` (the Redis key separator: `session:{user_id}:*`
  for the id `1` would match the keys of `1:2`), glob and template characters
  (`* ? [ ] { }`), `%`, spaces and control characters.

Surrounding spaces are tolerated (a form field's stray blank) and stripped; the
value inside must match. Errors name the type and the rule, never the value.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

IdentityType = Literal["email", "phone", "user_id", "account_id", "customer_id"]
IDENTITY_TYPES: Final[tuple[IdentityType, ...]] = get_args(IdentityType)
ID_TYPES: Final[tuple[IdentityType, ...]] = ("user_id", "account_id", "customer_id")

EMAIL_MAX_CHARS: Final = 254
EMAIL_LOCAL_MAX_CHARS: Final = 64
PHONE_MAX_CHARS: Final = 32
ID_MAX_CHARS: Final = 128

# The patterns are written for both Python's `re` and ECMA-262 (JSON Schema); they allow the
# surrounding spaces the pipeline strips, so the exported schema accepts what the model accepts.
_ATEXT = r"[A-Za-z0-9!#$%&'*+=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN: Final = (
    rf"^ *(?=[^@]{{1,{EMAIL_LOCAL_MAX_CHARS}}}@){_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+ *$"
)
_PHONE_SEP = r"[ ().-]*"
PHONE_PATTERN: Final = rf"^ *\+{_PHONE_SEP}[1-9](?:{_PHONE_SEP}[0-9]){{7,14}}{_PHONE_SEP}$"
ID_PATTERN: Final = r"^ *[A-Za-z0-9._@|-]*[A-Za-z0-9][A-Za-z0-9._@|-]* *$"

PATTERNS: Final[dict[IdentityType, str]] = {
    "email": EMAIL_PATTERN, "phone": PHONE_PATTERN,
    "user_id": ID_PATTERN, "account_id": ID_PATTERN, "customer_id": ID_PATTERN,
}
MAX_CHARS: Final[dict[IdentityType, int]] = {
    "email": EMAIL_MAX_CHARS, "phone": PHONE_MAX_CHARS,
    "user_id": ID_MAX_CHARS, "account_id": ID_MAX_CHARS, "customer_id": ID_MAX_CHARS,
}
RULES: Final[dict[IdentityType, str]] = {
    "email": (f"an e-mail address local@domain.tld: at most {EMAIL_LOCAL_MAX_CHARS} characters before "
              f"the @, {EMAIL_MAX_CHARS} in all, ASCII, no spaces, no '/', no empty or dot-only parts, "
              "a domain of letters, digits and inner hyphens with at least one dot"),
    "phone": "a phone number in E.164 form: '+', country code, 8 to 15 digits in all",
    **{t: (f"1 to {ID_MAX_CHARS} characters of letters, digits and _ - . @ |, at least one letter "
           "or digit (no spaces, '/', ':', wildcards or control characters)") for t in ID_TYPES},
}
_COMPILED: Final = {t: re.compile(p) for t, p in PATTERNS.items()}


class InvalidIdentityError(ValueError):
    """An identity value breaks its type's rule. The message names the type and the rule only."""

    def __init__(self, identity_type: str, rule: str) -> None:
        super().__init__(f"{identity_type}: expected {rule}")
        self.identity_type = identity_type
        self.rule = rule


def check_identity(identity_type: str, value: str) -> str:
    """The value with surrounding spaces stripped, if it is valid for its type; else raise.

    Raises `InvalidIdentityError`, whose message never holds the value.
    """
    if identity_type not in _COMPILED:
        raise InvalidIdentityError("identity_type", f"one of {', '.join(IDENTITY_TYPES)}")
    kind: IdentityType = identity_type
    stripped = value.strip(" ")
    if len(stripped) > MAX_CHARS[kind] or not _COMPILED[kind].fullmatch(stripped):
        raise InvalidIdentityError(kind, RULES[kind])
    return stripped


def normalised_value(identity_type: str, value: str) -> str:
    """The form two spellings of one identity share: e-mails case-folded, phones digits and `+` only."""
    value = value.strip()
    if identity_type == "email":
        return value.lower()
    if identity_type == "phone":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value
