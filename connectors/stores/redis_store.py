"""An internal Redis store: keys by pattern, hash fields, set and sorted-set members.

Patterns and members are templated on the subject's identities; glob characters
in an identity are escaped, so `*` in an address never widens a pattern. An
identity that is blank, holds control characters or (in a key pattern) the key
separator `:` is refused with a permanent error naming its type, before any key
is touched.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, cast

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import EraseResult, PermanentError, RetryableError, TaskContext, require_secret
from connectors.templating import UnsafeIdentityError, expand, template_fields
from schemas import Evidence, SubjectIdentities

GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


def _count(reply: object) -> int:
    """redis-py types its sync replies as maybe-awaitable; this client is synchronous."""
    return int(cast(int, reply))


def escape_glob(value: str) -> str:
    return GLOB_SPECIALS.sub(r"\\\1", value)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str | None = None


class KeysRule(_Rule):
    kind: Literal["keys"]
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _fields(cls, value: str) -> str:
        if not template_fields(value):
            raise ValueError("a key pattern must name an identity, e.g. session:{email}:*")
        return value


class MemberRule(_Rule):
    kind: Literal["hash_field", "set_member", "sorted_set_member"]
    key: str
    field: str | None = None
    member: str | None = None

    @model_validator(mode="after")
    def _template(self) -> MemberRule:
        template = self.field if self.kind == "hash_field" else self.member
        name = "field" if self.kind == "hash_field" else "member"
        if not template:
            raise ValueError(f"kind {self.kind!r} needs {name!r}, templated on an identity")
        if not template_fields(template):
            raise ValueError(f"{name!r} must name an identity, e.g. {{email}}")
        return self


Rule = Annotated[KeysRule | MemberRule, Field(discriminator="kind")]


class RedisStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="redis://host:port/db without a password")
    url_env: str | None = None
    rules: list[Rule] = Field(min_length=1)
    scan_count: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _one_url(self) -> RedisStoreSettings:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' and 'url_env'")
        return self


class RedisStoreConnector:
    def __init__(self, system: str, settings: RedisStoreSettings) -> None:
        self.system = system
        self.settings = settings
        url = settings.url or require_secret(settings.url_env or "", system)
        self._client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)

    def _expanded(self, subject: SubjectIdentities) -> list[tuple[Rule, list[str]]]:
        """Each rule with its patterns or members; every identity is checked before any key is touched."""
        expanded: list[tuple[Rule, list[str]]] = []
        try:
            for rule in self.settings.rules:
                if isinstance(rule, KeysRule):
                    expanded.append((rule, expand(rule.pattern, subject, escape_glob, target="key_pattern")))
                else:
                    template = rule.field if rule.kind == "hash_field" else rule.member
                    expanded.append((rule, expand(template or "", subject)))
        except UnsafeIdentityError as exc:
            raise PermanentError(self.system, f"{exc} where a key is built; nothing was erased") from None
        return expanded

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        removed = 0
        expanded = self._expanded(subject)
        try:
            for rule, values in expanded:
                if isinstance(rule, KeysRule):
                    for pattern in values:
                        keys = list(self._client.scan_iter(match=pattern, count=self.settings.scan_count))
                        if keys:
                            removed += _count(self._client.delete(*keys))
                    continue
                if not values:
                    continue
                if rule.kind == "hash_field":
                    removed += _count(self._client.hdel(rule.key, *values))
                elif rule.kind == "set_member":
                    removed += _count(self._client.srem(rule.key, *values))
                else:
                    removed += _count(self._client.zrem(rule.key, *values))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RetryableError(self.system, f"Redis unavailable ({type(exc).__name__})") from None
        return EraseResult(status="erased" if removed else "not_found",
                           evidence=Evidence(records_affected=removed))

    def check(self) -> str:
        try:
            self._client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RetryableError(self.system, f"Redis unavailable ({type(exc).__name__})") from None
        return "PING answered"

    def close(self) -> None:
        self._client.close()
