"""The Redis connector's batches against the real Redis: one pipeline, each person's own count."""

from __future__ import annotations

import uuid

import redis

from connectors.base import BatchItem, PermanentError, TaskContext
from connectors.stores.redis_store import RedisStoreConnector, RedisStoreSettings
from schemas import Identity, SubjectIdentities
from tests.test_redis_store import URL, connector, dump, person, prefix, seed

__all__ = ["prefix"]  # the fixture, used by name


def item(email: str, user_id: str | None = None) -> BatchItem:
    subject = person(email)
    if user_id is not None:  # past the schema's checks (the store checks again): a ':' reaches other keys
        unsafe = Identity.model_construct(identity_type="user_id", identity_value=user_id)
        subject = SubjectIdentities.model_construct(identities=[*subject.identities, unsafe])
    return BatchItem(subject, TaskContext(request_id=str(uuid.uuid4()), system="cache", attempt=1))


def with_user_keys(prefix: str) -> RedisStoreConnector:
    rules = [*connector(prefix).settings.model_dump()["rules"],
             {"kind": "keys", "pattern": f"{prefix}:user:{{user_id}}:*"}]
    return RedisStoreConnector("cache", RedisStoreSettings.model_validate({"url": URL, "rules": rules}))


def test_a_batch_erases_its_people_only_each_counted_once(prefix: str) -> None:
    before = seed(prefix)
    store = with_user_keys(prefix)
    try:
        answers = store.erase_batch([item("target@example.com"), item("nobody@example.com"),
                                     item("other@example.com", user_id="acct:42"), item("TARGET@example.com"),
                                     item("tar*@example.com")])
    finally:
        store.close()
    assert [getattr(a, "status", None) for a in answers] == ["erased", "not_found", None, "not_found",
                                                             "erased"]
    assert [a.evidence.records_affected for a in answers if not isinstance(a, Exception) and a.evidence] == [
        5, 0, 0, 5]
    # The unsafe identity fails its person alone, before any of their keys is touched.
    assert isinstance(answers[2], PermanentError) and "acct:42" not in str(answers[2])
    client = redis.Redis.from_url(URL, decode_responses=True)
    after = dump(client, prefix)
    client.close()
    gone = {"target@example.com", "tar*@example.com"}
    assert after == {
        "keys": [k for k in before["keys"] if k.split(":")[2] not in gone],  # type: ignore[attr-defined]
        "pending": {k: v for k, v in before["pending"].items() if k not in gone},  # type: ignore[attr-defined]
        "optin": [m for m in before["optin"] if m not in gone],  # type: ignore[attr-defined]
        "top": [m for m in before["top"] if m not in gone]}  # type: ignore[attr-defined]
