"""Templates on the subject's identities: `session:{email}:*`, `uploads/{user_id}/*`.

A template is expanded once per combination of the identities it names; a
template naming an identity the subject does not have expands to nothing.

The contract validates identities already (`schemas.identity`); a connector does
not rely on it alone. Where a value becomes part of a path or a key pattern it
must not change the template's shape, so every value is checked for its target
before anything is expanded: never blank, never control characters; in a path
never a separator or a dot segment (`.`, `..`); in a Redis key pattern never the
key separator `:`. Glob characters are escaped by the caller's `escape`.
"""

from __future__ import annotations

import itertools
import string
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from schemas import SubjectIdentities
from schemas.identity import IDENTITY_TYPES

Target = Literal["value", "path", "key_pattern"]
PATH_SEPARATORS = ("/", "\\")
DOT_SEGMENTS = (".", "..")
KEY_SEPARATOR = ":"


class UnsafeIdentityError(ValueError):
    """A value would change a template's shape. The message names the identity type, never the value."""

    def __init__(self, identity_type: str, problem: str) -> None:
        super().__init__(f"identity {identity_type} {problem}")
        self.identity_type = identity_type


def template_fields(template: str) -> list[str]:
    return list(_template_fields(template))


@lru_cache(maxsize=1024)
def _template_fields(template: str) -> tuple[str, ...]:
    """Parsed once per template (they come from the configuration: few, used for every task)."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    unknown = [f for f in fields if f not in IDENTITY_TYPES]
    if unknown:
        raise ValueError(f"template {template!r} names {unknown[0]!r}; "
                         f"use one of {', '.join('{' + f + '}' for f in IDENTITY_TYPES)}")
    return tuple(fields)


def check_value(identity_type: str, value: str, target: Target) -> None:
    """Raise `UnsafeIdentityError` if `value` (already stripped) is unsafe where it goes."""
    if not value:
        raise UnsafeIdentityError(identity_type, "is blank")
    # Categories C*: control, format (e.g. bidi overrides), surrogates, private use, unassigned.
    # Printable ASCII holds no C* character: only other values are looked at one by one.
    if not (value.isascii() and value.isprintable()) and any(
            unicodedata.category(ch).startswith("C") for ch in value):
        raise UnsafeIdentityError(identity_type, "holds control characters")
    if target == "path":
        if any(sep in value for sep in PATH_SEPARATORS):
            raise UnsafeIdentityError(identity_type, "holds a path separator")
        if value in DOT_SEGMENTS:
            raise UnsafeIdentityError(identity_type, "is a dot segment ('.' or '..')")
    if target == "key_pattern" and KEY_SEPARATOR in value:
        raise UnsafeIdentityError(identity_type, f"holds the key separator {KEY_SEPARATOR!r}")


def expand(template: str, subject: SubjectIdentities, escape: Callable[[str], str] = str,
           target: Target = "value") -> list[str]:
    """Every expansion of `template`; raises `UnsafeIdentityError` before expanding an unsafe value."""
    fields = _template_fields(template)
    values: dict[str, list[str]] = {}
    for identity in subject.identities:
        if identity.identity_type not in fields:  # never expanded: neither checked nor escaped
            continue
        value = identity.identity_value.strip()
        if identity.identity_type == "email":
            value = value.lower()
        check_value(identity.identity_type, value, target)
        values.setdefault(identity.identity_type, []).append(escape(value))
    if any(f not in values for f in fields):
        return []
    if len(fields) == 1:  # the common case, without the product's machinery
        [name] = fields
        return sorted({template.format_map({name: value}) for value in values[name]})
    combos = itertools.product(*(values[f] for f in fields))
    return sorted({template.format(**dict(zip(fields, combo, strict=True))) for combo in combos})
