"""Issue 9, first attack: a malformed identity must erase nothing of anyone else.

The `..`, `.`, `" "` and `../x` identities are refused at every door (contract,
intake client, `erasure submit`, router after opening), and the connectors hold
even when those doors are bypassed (identities built with `model_construct`):
the files store never removes its root or another person's files, a declared
processor's lookup never turns into a list call, a Redis key pattern never
reaches another person's keys.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
from click.testing import CliRunner
from nacl.public import PublicKey, SealedBox
from pydantic import ValidationError

from connectors.base import PermanentError, TaskContext
from connectors.client import PathParameterError, fill_path
from connectors.registry import build_connector, settings_model
from connectors.stores.files_store import FilesStoreConnector, FilesStoreSettings
from connectors.stores.redis_store import RedisStoreConnector, RedisStoreSettings
from pipeline.cli import main as erasure_cli
from pipeline.crypto import PipelineKeys, init_keys, key_fingerprint, load_keys
from pipeline.devstack.broker import Broker
from pipeline.devstack.demo import DEMO_PEOPLE
from pipeline.devstack.fake_server import Reply
from pipeline.intake import IntakeClient, subject_identities
from pipeline.ledger import open_ledger
from pipeline.register import SystemsRegister
from pipeline.signing import INTAKE
from pipeline.streaming import topics
from pipeline.streaming.router import Router
from schemas import ErasureRequested, Identity, SealedIdentities, SubjectIdentities
from schemas.export import schema_path
from schemas.identity import ID_TYPES, InvalidIdentityError
from tests.fakes.mailjet import FakeMailjet
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners

BAD_VALUES = ["..", ".", " ", "../exports"]
ALICE, BOB = "alice.martin@example.org", "bruno.dupont@example.org"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="uploads", attempt=1)


def bypassing_the_contract(identity_type: str, value: str) -> SubjectIdentities:
    """What a connector gets if every door before it failed: no validation at all."""
    return SubjectIdentities.model_construct(identities=[
        Identity.model_construct(identity_type=identity_type, identity_value=value)])


def attempt(erase: Callable[[], object]) -> PermanentError | None:
    """The connector's refusal, if any: what it did to the data is asserted first."""
    try:
        erase()
    except PermanentError as exc:
        return exc
    return None


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- the contract ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [*BAD_VALUES, "a@b/../c.example", "tab\t@example.org", "x@localhost"])
def test_the_contract_refuses_a_malformed_email_and_its_error_holds_no_value(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SubjectIdentities.model_validate(
            {"identities": [{"identity_type": "email", "identity_value": value}]})
    text = str(caught.value)
    assert "identity_value" in text and "e-mail address" in text
    if value.strip(" ") not in ("", ".", ".."):
        assert value not in text
    schema = json.loads(schema_path("SubjectIdentities").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(
        {"identities": [{"identity_type": "email", "identity_value": value}]})), "the JSON Schema agrees"


@pytest.mark.parametrize("identity_type", ID_TYPES)
@pytest.mark.parametrize("value", [*BAD_VALUES, "u*", "a:b", "x" * 129, "a\x00b"])
def test_the_contract_refuses_an_id_outside_the_safe_alphabet(identity_type: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"{identity_type}: expected"):
        Identity(identity_type=identity_type, identity_value=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [
    "0600000000", "+0600000000", "+33 6", "+33/600000000", "+1234567890123456"])
def test_the_contract_refuses_a_phone_outside_e164(value: str) -> None:
    with pytest.raises(ValidationError, match=r"E\.164"):
        Identity(identity_type="phone", identity_value=value)


@pytest.mark.parametrize(("identity_type", "value"), [
    *[("email", p.email) for p in DEMO_PEOPLE], *[("phone", p.phone) for p in DEMO_PEOPLE],
    ("email", "tar*@example.com"), ("email", " Zoe.Test@Example.ORG "), ("email", "x@y.z"),
    ("email", "o'brien+news@xn--bcher-kva.example"), ("phone", "+33 6 12-34.56 (78)"),
    ("user_id", "auth0|64f1c2"), ("user_id", "usr_ana_4242"), ("customer_id", "cus_N4kX"),
    ("account_id", "team.42@site"),
])
def test_valid_identities_still_pass(identity_type: str, value: str) -> None:
    identity = Identity(identity_type=identity_type, identity_value=value)  # type: ignore[arg-type]
    assert identity.identity_value == value.strip(" ")
    schema = json.loads(schema_path("SubjectIdentities").read_text())
    jsonschema.Draft202012Validator(schema).validate(
        {"identities": [{"identity_type": identity_type, "identity_value": value}]})


# -- the intake client and `erasure submit`, before sealing ---------------------------------------

@pytest.mark.parametrize("value", BAD_VALUES)
def test_the_intake_client_refuses_before_sealing(value: str, kafka: Broker, tmp_path: Path) -> None:
    keys = load_keys(init_keys(tmp_path / "keys").parent, need_private=False)
    with IntakeClient(kafka.bootstrap, keys.intake_public, TestSigners().signer(INTAKE)) as client:
        with pytest.raises(InvalidIdentityError, match=r"^email: expected an e-mail address"):
            client.submit({"email": value}, datetime.now(UTC))
        # An Identity that skipped validation is checked again.
        with pytest.raises(InvalidIdentityError, match=r"^user_id: expected"):
            client.build([Identity.model_construct(identity_type="user_id", identity_value=value)],
                          datetime.now(UTC))


def test_the_intake_client_names_the_field_never_the_value() -> None:
    with pytest.raises(InvalidIdentityError) as caught:
        subject_identities({"email": ALICE, "phone": "+33 6 ../exports"})
    assert str(caught.value).startswith("phone: expected") and "exports" not in str(caught.value)


@pytest.mark.parametrize(("option", "value"), [("--email", v) for v in BAD_VALUES] + [
    ("--user-id", "../exports"), ("--phone", "..")])
def test_erasure_submit_refuses_before_sealing(option: str, value: str) -> None:
    result = CliRunner().invoke(erasure_cli, ["submit", option, value],
                                env={"ERASURE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    assert result.exit_code == 1
    assert f"{option}: expected" in result.output
    assert "exports" not in result.output


# -- the router, after opening the sealed box -----------------------------------------------------

@pytest.fixture
def keys(tmp_path: Path) -> PipelineKeys:
    init_keys(tmp_path / "keys")
    return load_keys(tmp_path / "keys", need_private=True)


def sealed_raw(public_key: bytes, payload: dict[str, Any]) -> SealedIdentities:
    """What a publisher not using our client seals: any JSON at all."""
    import base64

    ciphertext = SealedBox(PublicKey(public_key)).encrypt(json.dumps(payload).encode())
    return SealedIdentities(alg="sealedbox-x25519", key_id=key_fingerprint(public_key),
                            ciphertext=base64.b64encode(ciphertext).decode())


@pytest.mark.parametrize("value", BAD_VALUES)
def test_the_router_dead_letters_an_invalid_opened_identity(value: str, keys: PipelineKeys,
                                                            tmp_path: Path) -> None:
    from pipeline.devstack.demo import demo_systems

    register = SystemsRegister.model_validate(demo_systems("sqlite:///x.db", "http://127.0.0.1:1"))
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    publisher = MemoryPublisher()
    request = ErasureRequested(
        request_id=str(uuid.uuid4()), received_at=datetime(2026, 11, 26, 10, tzinfo=UTC),
        identities=sealed_raw(keys.intake_public, {"identities": [
            {"identity_type": "user_id", "identity_value": "u-42"},
            {"identity_type": "email", "identity_value": value}]}))
    signers = TestSigners()
    record = signers.received(topics.REQUESTS, 7, request.request_id.encode(), request)
    try:
        routed = asyncio.run(Router(register, keys, ledger, publisher, signers.verifier()).route([record]))
        assert routed == [] and ledger.data_key(request.request_id) is None
    finally:
        ledger.close()
    assert [m.topic for m in publisher.sent] == [topics.DEADLETTER], "no plan, no task"
    [letter] = publisher.dead_letters()
    assert letter["offset"] == 7 and letter["consumer"] == "router"
    reason = letter["reason"]
    assert reason.startswith("sealed identities:")
    assert "identities.1.identity_value" in reason and "e-mail address" in reason
    assert "u-42" not in reason and "exports" not in reason and "'..'" not in reason


# -- the files store: the rmtree of the root and of other people's files ------------------

@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    for email in (ALICE, BOB):
        (root / "uploads" / email).mkdir(parents=True)
        (root / "uploads" / email / "passport.png").write_text("scan")
        (root / "exports").mkdir(exist_ok=True)
        (root / "exports" / f"{email}.zip").write_text("zip")
    return root


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_bad_email_erases_nothing_of_anyone_in_the_files_store(value: str, files_root: Path) -> None:
    store = FilesStoreConnector("uploads", FilesStoreSettings(
        root=str(files_root), paths=["uploads/{email}", "exports/{email}.zip"]))
    before = tree(files_root)
    refused = attempt(lambda: store.erase(bypassing_the_contract("email", value), CONTEXT))
    assert files_root.is_dir() and tree(files_root) == before, "the root and both people's files remain"
    assert refused is not None and "uploads: identity email" in str(refused)
    assert "nothing was erased" in str(refused)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_bad_user_id_erases_nothing_even_at_the_top_of_the_root(value: str, files_root: Path) -> None:
    store = FilesStoreConnector("uploads", FilesStoreSettings(root=str(files_root / "uploads"),
                                                              paths=["{user_id}"]))
    before = tree(files_root)
    refused = attempt(lambda: store.erase(bypassing_the_contract("user_id", value), CONTEXT))
    assert tree(files_root) == before
    assert refused is not None and "uploads: identity user_id" in str(refused)


@pytest.mark.parametrize("path", [".", "", "uploads/.."])
def test_a_manifest_row_pointing_at_the_root_never_removes_it(path: str, files_root: Path) -> None:
    rows = [{"identity_type": "email", "identity_value": ALICE, "path": path}]
    (files_root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = FilesStoreConnector("uploads", FilesStoreSettings(root=str(files_root),
                                                              manifest="manifest.jsonl"))
    before = tree(files_root)
    with pytest.raises(PermanentError, match="root itself, which is never removed"):
        store.erase(SubjectIdentities(identities=[Identity(identity_type="email", identity_value=ALICE)]),
                    CONTEXT)
    assert tree(files_root) == before


def test_a_blank_identity_matches_no_blank_manifest_row(files_root: Path) -> None:
    rows = [{"identity_type": "email", "identity_value": "", "path": f"uploads/{BOB}/passport.png"}]
    (files_root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = FilesStoreConnector("uploads", FilesStoreSettings(root=str(files_root),
                                                              manifest="manifest.jsonl"))
    with pytest.raises(PermanentError, match="identity email is blank"):
        store.erase(bypassing_the_contract("email", " "), CONTEXT)
    assert (files_root / "uploads" / BOB / "passport.png").exists()


# -- a declared processor: `.` made the lookup a list call and erased every contact ---------------

class ListingMailjet(FakeMailjet):
    """A Mailjet that answers `GET /v3/REST/contact/` (empty key) with the whole list, and
    records every call."""

    def __init__(self, credentials: set[tuple[str, str]]) -> None:
        super().__init__(credentials)
        self.calls: list[tuple[str, str]] = []

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        self.calls.append((method, path))
        if method == "GET" and path == "/v3/REST/contact/":
            path = "/v3/REST/contact"
        return super().handle(method, path, query, headers, body)


@pytest.mark.parametrize("value", [".", "..", " "])
def test_a_dot_email_never_becomes_a_list_call(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ListingMailjet({("pub", "priv")})
    fake.start()
    monkeypatch.setenv("TEST_MJ_PUBLIC", "pub")
    monkeypatch.setenv("TEST_MJ_PRIVATE", "priv")
    settings = settings_model("mailjet").model_validate(
        {"base_url": fake.url, "secrets": {"api_key": "TEST_MJ_PUBLIC", "secret_key": "TEST_MJ_PRIVATE"}})
    connector = build_connector("mailjet", "mailjet", settings)
    try:
        for email in (ALICE, BOB):
            fake.add_contact(email)
        refused = attempt(lambda: connector.erase(bypassing_the_contract("email", value), CONTEXT))
        assert not any(method == "DELETE" for method, _ in fake.calls), "no contact was deleted"
        assert fake.has_contact(ALICE) and fake.has_contact(BOB)
        assert refused is not None and "mailjet: email: expected" in str(refused)
        assert fake.calls == [], "nothing was sent"
    finally:
        connector.close()
        fake.stop()


@pytest.mark.parametrize("value", [".", "..", "", " "])
def test_a_path_parameter_never_changes_the_routes_shape(value: str) -> None:
    with pytest.raises(PathParameterError, match="path parameter 'id'"):
        fill_path("/v4/contacts/{id}", {"id": value})
    assert fill_path("/v4/contacts/{id}", {"id": "a/../b"}) == "/v4/contacts/a%2F..%2Fb"


# -- the Redis store: glob characters escaped, the key separator refused --------------------------

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.parametrize("value", ["*", "4?", "[0-9]*", "42:web", " ", "4\n2"])
def test_a_user_id_never_reaches_other_peoples_redis_keys(value: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    seeded = [f"{redis_prefix}:session:42:web:a1", f"{redis_prefix}:session:42:app:b2",
              f"{redis_prefix}:session:43:web:c3"]
    for key in seeded:
        client.set(key, "s")
    store = RedisStoreConnector("cache", RedisStoreSettings.model_validate({"url": REDIS_URL, "rules": [
        {"kind": "keys", "pattern": f"{redis_prefix}:session:{{user_id}}:*"}]}))
    try:
        try:
            result = store.erase(bypassing_the_contract("user_id", value), CONTEXT)
            assert result.status == "not_found"
        except PermanentError as exc:
            assert "cache: identity user_id" in str(exc) and "web" not in str(exc)
        assert sorted(client.scan_iter(match=f"{redis_prefix}:*")) == sorted(seeded)
    finally:
        store.close()
        client.close()
