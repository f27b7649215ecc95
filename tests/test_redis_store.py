"""The Redis connector against the real Redis on the machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from connectors.base import TaskContext
from connectors.stores.redis_store import RedisStoreConnector, RedisStoreSettings
from schemas import Identity, SubjectIdentities

URL = "redis://127.0.0.1:6379/14"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="cache", attempt=1)
PEOPLE = ["target@example.com", "other@example.com", "tar*@example.com", "t?rget@example.com"]


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def seed(prefix: str) -> dict[str, object]:
    client = redis.Redis.from_url(URL, decode_responses=True)
    for email in PEOPLE:
        client.set(f"{prefix}:session:{email}:a1", "s")
        client.set(f"{prefix}:session:{email}:b2", "s")
        client.hset(f"{prefix}:pending", email, "x")
        client.sadd(f"{prefix}:optin", email)
        client.zadd(f"{prefix}:top", {email: 1})
    state = dump(client, prefix)
    client.close()
    return state


def dump(client: redis.Redis, prefix: str) -> dict[str, object]:  # type: ignore[type-arg]
    return {"keys": sorted(client.scan_iter(match=f"{prefix}:session:*")),
            "pending": client.hgetall(f"{prefix}:pending"),
            "optin": sorted(client.smembers(f"{prefix}:optin")),  # type: ignore[arg-type]
            "top": client.zrange(f"{prefix}:top", 0, -1)}


def connector(prefix: str) -> RedisStoreConnector:
    return RedisStoreConnector("cache", RedisStoreSettings.model_validate({"url": URL, "rules": [
        {"kind": "keys", "pattern": f"{prefix}:session:{{email}}:*"},
        {"kind": "hash_field", "key": f"{prefix}:pending", "field": "{email}"},
        {"kind": "set_member", "key": f"{prefix}:optin", "member": "{email}"},
        {"kind": "sorted_set_member", "key": f"{prefix}:top", "member": "{email}"},
    ]}))


def person(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


@pytest.mark.parametrize("email", ["TARGET@example.com", "tar*@example.com"])
def test_erases_the_subject_only(prefix: str, email: str) -> None:
    before = seed(prefix)
    store = connector(prefix)
    try:
        result = store.erase(person(email), CONTEXT)
        assert result.status == "erased" and result.evidence and result.evidence.records_affected == 5
        client = redis.Redis.from_url(URL, decode_responses=True)
        after = dump(client, prefix)
        client.close()
        gone = email.lower()
        assert after == {
            "keys": [k for k in before["keys"] if f":{gone}:" not in k],  # type: ignore[attr-defined]
            "pending": {k: v for k, v in before["pending"].items() if k != gone},  # type: ignore[attr-defined]
            "optin": [m for m in before["optin"] if m != gone],  # type: ignore[attr-defined]
            "top": [m for m in before["top"] if m != gone]}  # type: ignore[attr-defined]
        assert store.erase(person(email), CONTEXT).status == "not_found"
    finally:
        store.close()


def test_unreachable_redis_is_retryable() -> None:
    from connectors.base import RetryableError

    store = RedisStoreConnector("cache", RedisStoreSettings.model_validate(
        {"url": "redis://127.0.0.1:9/0", "rules": [{"kind": "keys", "pattern": "s:{email}"}]}))
    with pytest.raises(RetryableError, match="cache: Redis unavailable"):
        store.erase(person("a@example.com"), CONTEXT)


def test_rules_must_name_an_identity() -> None:
    with pytest.raises(ValueError, match="must name an identity"):
        RedisStoreSettings.model_validate({"url": URL, "rules": [{"kind": "keys", "pattern": "all:*"}]})
    with pytest.raises(ValueError, match="names 'name'"):
        RedisStoreSettings.model_validate({"url": URL, "rules": [
            {"kind": "set_member", "key": "k", "member": "{name}"}]})


def test_a_pattern_without_a_wildcard_deletes_its_one_key_by_name(prefix: str) -> None:
    client = redis.Redis.from_url(URL, decode_responses=True)
    for email in PEOPLE:
        client.set(f"{prefix}:profile:{email}", "p")
    store = RedisStoreConnector("cache", RedisStoreSettings.model_validate({"url": URL, "rules": [
        {"kind": "keys", "pattern": f"{prefix}:profile:{{email}}"}]}))
    try:
        result = store.erase(person("tar*@example.com"), CONTEXT)
        assert result.status == "erased" and result.evidence and result.evidence.records_affected == 1
        assert sorted(client.scan_iter(match=f"{prefix}:profile:*")) == sorted(
            f"{prefix}:profile:{email}" for email in PEOPLE if email != "tar*@example.com")
        assert store.erase(person("tar*@example.com"), CONTEXT).status == "not_found"
    finally:
        store.close()
        client.close()


@pytest.mark.parametrize(("pattern", "key"), [
    ("cache:a@b.c", "cache:a@b.c"), ("cache:a\\*b", "cache:a*b"), ("x:a\\\\b", "x:a\\b"),
    ("session:a:*", None), ("s:a?", None), ("s:[ab]", None), ("s:\\[a\\]:*", None)])
def test_literal_key(pattern: str, key: str | None) -> None:
    from connectors.stores.redis_store import literal_key

    assert literal_key(pattern) == key
