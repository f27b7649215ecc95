"""Every answer of the desk carries its security headers, errors included: a 404, a 413 (a body over
the cap, announced or streamed), a 422 and a 500 (an unhandled error), over real HTTP; a 500's body
names no exception detail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipeline.desk.headers import SecurityHeaders
from tests.security.desk_app import SmallDesk, small_desk
from tests.security.test_desk_hardening import raw_post

EXPECTED = {name.lower(): value for name, value in SecurityHeaders(lambda *_: None).headers.items()}  # type: ignore[arg-type]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SmallDesk]:
    with small_desk(tmp_path) as served:
        yield served


def assert_hardened(headers: httpx.Headers | dict[str, str], what: str) -> None:
    found = {name.lower(): value for name, value in headers.items()}
    missing = {name: value for name, value in EXPECTED.items() if found.get(name) != value}
    assert not missing, f"{what}: missing or different security headers {sorted(missing)}"


def head_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers of a raw HTTP answer."""
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def test_a_404_and_a_422_carry_the_headers(desk: SmallDesk) -> None:
    with desk.client() as client:
        missing = client.get("/no-such-page")
        assert missing.status_code == 404
        assert_hardened(missing.headers, "404")
        invalid = client.post("/v1/erasure-requests", json={"not": "a request"},
                              headers={"authorization": f"Bearer {desk.tokens['php-backend']}"})
        assert invalid.status_code == 422
        assert_hardened(invalid.headers, "422")


@pytest.mark.parametrize("path", ["/v1/erasure-requests", "/opendsr/callbacks", "/login"])
def test_a_413_for_an_announced_length_carries_the_headers(desk: SmallDesk, path: str) -> None:
    announced = raw_post(desk.url, path, {
        "content-length": str(50 * 1024 * 1024), "content-type": "application/json",
        "authorization": f"Bearer {desk.tokens['php-backend']}"}, b"{}")
    status, headers = head_of(announced)
    assert status == 413
    assert_hardened(headers, f"413 on {path} (Content-Length over the cap)")


def test_a_413_for_a_streamed_body_cut_at_the_cap_carries_the_headers(desk: SmallDesk) -> None:
    chunk = b"a" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"  # 128 KiB
    streamed = raw_post(desk.url, "/v1/erasure-requests", {
        "transfer-encoding": "chunked", "content-type": "application/json",
        "authorization": f"Bearer {desk.tokens['php-backend']}"}, body)
    status, headers = head_of(streamed)
    assert status == 413
    assert_hardened(headers, "413 (chunked body cut at the cap)")


def test_a_500_carries_the_headers_and_names_no_exception_detail(desk: SmallDesk) -> None:
    # An unhandled error in a real route: the ledger loses the table the intake's tokens are read from.
    with desk.ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE intake_clients"))
    with desk.client() as client:
        broken = client.post("/v1/erasure-requests", json={"not": "a request"},
                             headers={"authorization": f"Bearer {desk.tokens['php-backend']}"})
    assert broken.status_code == 500
    assert_hardened(broken.headers, "500")
    for detail in ("intake_clients", "OperationalError", "Traceback", "sqlite", "SELECT", "no such table"):
        assert detail.lower() not in broken.text.lower(), f"the 500 names {detail!r}"
