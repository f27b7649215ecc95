"""The desk and the HTTP intake under attack: brute force, user enumeration, stolen or stale cookies,
cross-site forms, framing and CDN scripts, huge bodies, a client-set legal clock, identities passed as
pseudonyms, echoed key names, other clients' receipts; officers' free text kept out of the chain."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.crypto import init_keys, load_keys, seal_for_intake
from pipeline.desk.app import DeskSecurity
from pipeline.ledger import accounts
from pipeline.ledger.accounts import LEGACY_SCRYPT, hash_password
from pipeline.ledger.actions import erase_notes
from pipeline.ledger.tables import users_table
from schemas import Identity, SubjectIdentities
from tests.desk_fixtures import OFFICER
from tests.desk_server import csrf, form_token, login
from tests.security.desk_app import SmallDesk, small_desk

EMAIL = "hardening.person@example.test"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SmallDesk]:
    with small_desk(tmp_path) as served:
        yield served


def login_attempt(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": name, "password": password, "csrf": form_token(client)})


# -- logins ------------------------------------------------------------------------------------
def test_brute_force_on_an_account_is_throttled_with_retry_after(desk: SmallDesk) -> None:
    with desk.client() as client:
        assert [login_attempt(client, OFFICER[0], f"guess-{i}").status_code for i in range(5)] == [401] * 5
        locked = login_attempt(client, OFFICER[0], OFFICER[1])  # even the right password, for now
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    assert "Too many failed logins" in locked.text


def test_brute_force_from_one_address_over_many_names_is_throttled(tmp_path: Path) -> None:
    with small_desk(tmp_path, DeskSecurity(cookie_secure=False, login_max_failures_per_address=3)) as desk, \
            desk.client() as client:
        answers = [login_attempt(client, f"name-{i}", "guess-password").status_code for i in range(3)]
        assert answers == [401] * 3
        assert login_attempt(client, OFFICER[0], OFFICER[1]).status_code == 429


def test_an_unknown_user_costs_the_same_scrypt_work(desk: SmallDesk, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(password: bytes, **kwargs: int) -> bytes:
        calls.append(kwargs["n"])
        return real(password, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(accounts.hashlib, "scrypt", counting)
    assert desk.access.authenticate(OFFICER[0], "wrong-password") is None
    known, calls[:] = list(calls), []
    assert desk.access.authenticate("nobody-at-all", "wrong-password") is None
    assert known == calls == [2**17], "one scrypt at N=2^17 whether the account exists or not"


def test_old_hashes_verify_and_are_upgraded_to_current_parameters(desk: SmallDesk) -> None:
    legacy_salt = b"s" * 16
    legacy = "scrypt${}${}".format(legacy_salt.hex(), hashlib.scrypt(
        b"legacy-password-1", salt=legacy_salt, n=2**LEGACY_SCRYPT.log2_n, r=8, p=1).hex())
    with desk.ledger.writer.begin() as conn:
        conn.execute(users_table.update().where(users_table.c.name == OFFICER[0]).values(
            password_hash=legacy))
    assert desk.access.authenticate(OFFICER[0], "legacy-password-1") is not None
    with desk.ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(users_table.c.password_hash).where(
            users_table.c.name == OFFICER[0])).scalar_one()
    assert stored.startswith("scrypt$ln=17,r=8,p=1$"), "rehashed at N=2^17, parameters in the hash"
    assert desk.access.authenticate(OFFICER[0], "legacy-password-1") is not None
    assert hash_password("x" * 10).startswith("scrypt$ln=17,r=8,p=1$")


# -- sessions ----------------------------------------------------------------------------------
def test_a_logged_out_cookie_is_refused(desk: SmallDesk) -> None:
    officer = login(desk.url, *OFFICER)
    stolen = dict(officer.cookies)
    assert officer.get("/").status_code == 200
    token = csrf(officer, desk.request_id)
    assert officer.post("/logout", data={"csrf": token}).status_code == 303
    with httpx.Client(base_url=desk.url, cookies=stolen) as replay:
        response = replay.get(f"/requests/{desk.request_id}")
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_a_cookie_from_before_a_password_change_is_refused(desk: SmallDesk) -> None:
    officer = login(desk.url, *OFFICER)
    assert officer.get("/").status_code == 200
    desk.access.set_user(OFFICER[0], "officer", "a-brand-new-password", datetime.now(UTC))
    response = officer.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_a_removed_user_and_a_revoked_client_are_refused_at_once(desk: SmallDesk, tmp_path: Path) -> None:
    officer = login(desk.url, *OFFICER)
    env = {"ERASURE_HOME_DIR": str(tmp_path / "home"), "ERASURE_DATABASE_URL": str(desk.ledger.engine.url)}
    runner = CliRunner()
    removed = runner.invoke(main, ["users", "remove", OFFICER[0]], env=env)
    assert removed.exit_code == 0, removed.output
    assert officer.get("/").status_code == 303
    revoked = runner.invoke(main, ["clients", "revoke", "php-backend"], env=env)
    assert revoked.exit_code == 0, revoked.output
    response = httpx.post(f"{desk.url}/v1/erasure-requests", json={},
                          headers={"authorization": f"Bearer {desk.tokens['php-backend']}"})
    assert response.status_code == 401
    assert runner.invoke(main, ["clients", "revoke", "php-backend"], env=env).exit_code == 1


def test_login_and_logout_without_the_csrf_token_are_refused(desk: SmallDesk) -> None:
    with desk.client() as client:
        client.get("/login")
        forged = client.post("/login", data={"username": OFFICER[0], "password": OFFICER[1]})
        assert forged.status_code == 403 and client.get("/").status_code == 303
        wrong = client.post("/login", data={"username": OFFICER[0], "password": OFFICER[1], "csrf": "x" * 43})
        assert wrong.status_code == 403
    officer = login(desk.url, *OFFICER)
    assert officer.post("/logout").status_code == 403
    assert officer.get("/").status_code == 200, "a forged logout does not end the session"


def test_the_session_cookie_is_secure_by_default(tmp_path: Path) -> None:
    with small_desk(tmp_path, DeskSecurity()) as desk:
        cookie = httpx.get(f"{desk.url}/login").headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


# -- headers, docs -----------------------------------------------------------------------------
def test_security_headers_on_every_answer(desk: SmallDesk) -> None:
    officer = login(desk.url, *OFFICER)
    for response in (httpx.get(f"{desk.url}/login"), officer.get(f"/requests/{desk.request_id}"),
                     httpx.post(f"{desk.url}/v1/erasure-requests", json={})):
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src 'none'" in policy and "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    page = officer.get(f"/requests/{desk.request_id}")
    style = re.search(r"<style>(.*?)</style>", page.text, re.DOTALL)
    assert style, "the page has its inline style"
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["content-security-policy"], "the style is allowed by hash"


def test_docs_load_nothing_from_a_cdn_and_the_openapi_document_stays(desk: SmallDesk) -> None:
    docs = httpx.get(f"{desk.url}/docs")
    external = re.findall(r"""(?:src|href)=["']?(https?:)?//""", docs.text)
    assert docs.status_code == 404 or not external
    assert "cdn" not in docs.text.lower()
    assert httpx.get(f"{desk.url}/openapi.json").json()["paths"]


# -- bodies ------------------------------------------------------------------------------------
def raw_post(url: str, path: str, headers: dict[str, str], body: bytes, chunked: bool = False) -> bytes:
    """One POST over a plain socket, so the body may lie about its length; the answer's head."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        lines = [f"POST {path} HTTP/1.1", f"host: {address.netloc}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return sock.recv(4096)  # a timeout here: the server waited for the 50 MB


@pytest.mark.parametrize("path", ["/opendsr/callbacks", "/v1/erasure-requests", "/login"])
def test_a_50_mb_content_length_is_refused_at_once_without_reading(desk: SmallDesk, path: str) -> None:
    headers = {"content-length": str(50 * 1024 * 1024), "content-type": "application/json",
               "authorization": f"Bearer {desk.tokens['php-backend']}"}
    answer = raw_post(desk.url, path, headers, b"{}")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_chunked_body_is_cut_at_the_cap(desk: SmallDesk) -> None:
    chunk = b"a" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"  # 128 KiB
    headers = {"transfer-encoding": "chunked", "content-type": "application/json",
               "authorization": f"Bearer {desk.tokens['php-backend']}"}
    assert raw_post(desk.url, "/v1/erasure-requests", headers, body).startswith(b"HTTP/1.1 413")


# -- intake ------------------------------------------------------------------------------------
def intake_body(root: Path, **overrides: object) -> dict[str, object]:
    if not (root / "keys").exists():
        init_keys(root / "keys")
    sealed = seal_for_intake(load_keys(root / "keys").intake_public, SubjectIdentities(identities=[
        Identity(identity_type="email", identity_value=EMAIL)]))
    return {"request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(),
            "channel": "http_api", "identities": sealed.model_dump(), **overrides}


def submit(desk: SmallDesk, body: object, client: str = "php-backend") -> httpx.Response:
    return httpx.post(f"{desk.url}/v1/erasure-requests", json=body,
                      headers={"authorization": f"Bearer {desk.tokens[client]}"})


def test_the_intake_refuses_a_1990_received_at_and_one_in_the_future(desk: SmallDesk, tmp_path: Path) -> None:
    assert submit(desk, intake_body(tmp_path)).status_code == 202, "now is fine"
    for when in ("1990-01-01T10:00:00+01:00", "2999-01-01T10:00:00+00:00"):
        response = submit(desk, intake_body(tmp_path, received_at=when))
        assert response.status_code == 422, when
        assert [d["loc"] for d in response.json()["detail"]] == [["body", "received_at"]]
    assert len(desk.sent) == 1


def test_the_intake_refuses_an_email_as_subject_ref(desk: SmallDesk, tmp_path: Path) -> None:
    response = submit(desk, intake_body(tmp_path, subject_ref=EMAIL))
    assert response.status_code == 422 and EMAIL not in response.text
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "subject_ref"]]
    assert submit(desk, intake_body(tmp_path, subject_ref="sr_" + "0a" * 16)).status_code == 202


def test_a_422_does_not_echo_an_unknown_keys_name(desk: SmallDesk, tmp_path: Path) -> None:
    body = intake_body(tmp_path)
    body["zoe.martin@example.test"] = "x"
    body["identities"] = {**body["identities"], "dr_smith_notes": 1}  # type: ignore[dict-item]
    response = submit(desk, body)
    assert response.status_code == 422
    assert "zoe.martin" not in response.text and "dr_smith" not in response.text
    assert {tuple(d["loc"]) for d in response.json()["detail"]} == {("body",), ("body", "identities")}


def test_a_client_can_neither_read_nor_take_another_clients_receipt(desk: SmallDesk, tmp_path: Path) -> None:
    body = intake_body(tmp_path)
    mine = submit(desk, body)
    assert mine.status_code == 202 and submit(desk, body).json() == mine.json()
    theirs = submit(desk, body, client="other-backend")
    assert theirs.status_code == 409 and "due_at" not in theirs.text
    assert submit(desk, {**body, "channel": "email"}, client="other-backend").json() == theirs.json()
    assert len(desk.sent) == 1


# -- officers' free text -----------------------------------------------------------------------
def test_an_extension_reason_and_a_note_stay_out_of_the_chain_but_show_on_the_page(desk: SmallDesk) -> None:
    reason, note = "many linked accounts (ticket DPO-4471)", "letter from Dr Zoe Martin, 2026-11-20"
    officer = login(desk.url, *OFFICER)
    officer.post(f"/requests/{desk.request_id}/extend",
                 data={"csrf": csrf(officer, desk.request_id), "months": "1", "reason": reason})
    officer.post(f"/requests/{desk.request_id}/systems/paper-vendor/confirm",
                 data={"csrf": csrf(officer, desk.request_id), "outcome": "erased", "note": note})
    chain = json.dumps([dict(e._mapping) for e in desk.ledger.events()], default=str)
    assert "deadline_extended" in chain and "manual_confirmed" in chain
    assert reason not in chain and "DPO-4471" not in chain and "Zoe" not in chain
    assert hashlib.sha256(reason.encode()).hexdigest() in chain, "the chain carries the digest"
    page = officer.get(f"/requests/{desk.request_id}").text
    assert reason in page and "Zoe Martin" in page
    assert erase_notes(desk.ledger, desk.request_id) == 2
    page = officer.get(f"/requests/{desk.request_id}").text
    assert reason not in page and "Zoe" not in page and "(text erased)" in page
    assert desk.ledger.verify_chain() is None


def test_erasure_notes_erase_removes_the_text_and_the_chain_still_verifies(desk: SmallDesk,
                                                                          tmp_path: Path) -> None:
    officer = login(desk.url, *OFFICER)
    officer.post(f"/requests/{desk.request_id}/extend",
                 data={"csrf": csrf(officer, desk.request_id), "months": "1", "reason": "many accounts"})
    env = {"ERASURE_HOME_DIR": str(tmp_path / "home"), "ERASURE_DATABASE_URL": str(desk.ledger.engine.url)}
    status = CliRunner().invoke(main, ["status", desk.request_id], env=env)
    assert "deadline extended: many accounts" in status.output, status.output
    erased = CliRunner().invoke(main, ["notes", "erase", desk.request_id], env=env)
    assert erased.exit_code == 0 and "1 note(s)" in erased.output
    status = CliRunner().invoke(main, ["status", desk.request_id], env=env)
    assert "many accounts" not in status.output and "(text erased)" in status.output
    assert CliRunner().invoke(main, ["ledger", "verify"], env=env).output.startswith("ledger chain intact")
