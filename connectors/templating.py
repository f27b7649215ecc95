"""Templates on the subject's identities: `session:{email}:*`, `uploads/{user_id}/*`.

A template is expanded once per combination of the identities it names; a
template naming an identity the subject does not have expands to nothing.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable

from schemas import SubjectIdentities
from schemas.identity import IDENTITY_TYPES


def template_fields(template: str) -> list[str]:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    unknown = [f for f in fields if f not in IDENTITY_TYPES]
    if unknown:
        raise ValueError(f"template {template!r} names {unknown[0]!r}; "
                         f"use one of {', '.join('{' + f + '}' for f in IDENTITY_TYPES)}")
    return fields


def expand(template: str, subject: SubjectIdentities, escape: Callable[[str], str] = str) -> list[str]:
    fields = template_fields(template)
    values: dict[str, list[str]] = {}
    for identity in subject.identities:
        value = identity.identity_value.strip()
        if identity.identity_type == "email":
            value = value.lower()
        values.setdefault(identity.identity_type, []).append(escape(value))
    if any(f not in values for f in fields):
        return []
    combos = itertools.product(*(values[f] for f in fields))
    return sorted({template.format(**dict(zip(fields, combo, strict=True))) for combo in combos})
