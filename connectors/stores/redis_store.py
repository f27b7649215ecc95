"""An internal Redis store: keys by pattern, hash fields, set and sorted-set members.

Patterns and members are templated on the subject's identities; glob characters
in an identity are escaped, so `*` in an address never widens a pattern. An
identity that is blank, holds control characters or (in a key pattern) the key
separator `:` is refused with a permanent error naming its type, before any key
is touched.

A batch (`erase_batch`) scans each person's key patterns (a pattern without a wildcard names
its one key: it is not scanned for), then sends every person's deletions
in one pipeline: one round trip for the batch. The commands run in the batch's order, so a
key two people share is counted for the first, as if they had been erased one after the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, cast

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
    require_secret,
)
from connectors.templating import UnsafeIdentityError, expand, template_fields
from schemas import Evidence, SubjectIdentities

GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


def literal_key(pattern: str) -> str | None:
    """The one key a pattern matches when it holds no unescaped glob character, else None."""
    if not any(ch in pattern for ch in "*?[\\"):
        return pattern
    key: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            key.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "*?[":
            return None
        else:
            key.append(ch)
    return "".join(key)


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
    # The runtime hands at most this many tasks to `erase_batch` at once.
    max_batch = 100

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
        [answer] = self.erase_batch([BatchItem(subject, context)])
        if isinstance(answer, ConnectorError):
            raise answer
        return answer

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        """Each person's erasure; a person with an unsafe identity fails alone, before any key
        is touched. Redis unreachable fails the batch (retryable)."""
        answers: dict[int, EraseResult | ConnectorError] = {}
        planned: list[tuple[int, list[tuple[Rule, list[str]]]]] = []
        for index, item in enumerate(items):
            try:
                planned.append((index, self._expanded(item.subject)))
            except PermanentError as exc:
                answers[index] = exc
        try:
            removed = self._remove([expanded for _, expanded in planned])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RetryableError(self.system, f"Redis unavailable ({type(exc).__name__})") from None
        for (index, _), count in zip(planned, removed, strict=True):
            answers[index] = EraseResult(status="erased" if count else "not_found",
                                         evidence=Evidence(records_affected=count))
        return [answers[index] for index in range(len(items))]

    def _remove(self, people: list[list[tuple[Rule, list[str]]]]) -> list[int]:
        """Scan each person's key patterns, then send every deletion in one pipeline; per person,
        how many keys, fields and members went."""
        pipe = self._client.pipeline(transaction=False)
        commands: list[int] = []  # per person, how many replies are theirs
        for expanded in people:
            before = len(pipe)
            for rule, values in expanded:
                if isinstance(rule, KeysRule):
                    for pattern in values:
                        # A pattern naming one key is deleted by name: scanning the whole keyspace
                        # (a round trip per `scan_count` keys) to find it was most of the cost.
                        key = literal_key(pattern)
                        keys = [key] if key is not None else list(
                            self._client.scan_iter(match=pattern, count=self.settings.scan_count))
                        if keys:
                            pipe.delete(*keys)
                elif values and rule.kind == "hash_field":
                    pipe.hdel(rule.key, *values)
                elif values and rule.kind == "set_member":
                    pipe.srem(rule.key, *values)
                elif values:
                    pipe.zrem(rule.key, *values)
            commands.append(len(pipe) - before)
        replies = iter(pipe.execute() if len(pipe) else [])
        return [sum(_count(next(replies)) for _ in range(n)) for n in commands]

    def check(self) -> str:
        try:
            self._client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RetryableError(self.system, f"Redis unavailable ({type(exc).__name__})") from None
        return "PING answered"

    def close(self) -> None:
        self._client.close()
