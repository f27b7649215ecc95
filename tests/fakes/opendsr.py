"""A fake OpenDSR 2.0 processor (the protocol mParticle, AppsFlyer and Singular speak).

Serves `GET /v2/discovery` (public) with `processor_certificate` pointing at
`GET /v2/certificate.pem`; `POST /v2/requests` (Basic auth) answers 201 with
controller_id, expected_completion_time, received_time, encoded_request and subject_request_id;
a `subject_request_id` already known answers with the existing request (no second one);
`GET /v2/requests/{id}` gives request_status pending|in_progress|completed|cancelled;
`DELETE /v2/requests/{id}` cancels while pending (202), 400 otherwise. Every error is 400 with an
`error` object (§7.5: "For errors, the OpenDSR service MUST respond with HTTP status code 400"),
an unknown subject_request_id included. Successful answers (discovery, 201 create, status, 202
cancel) carry X-OpenDSR-Processor-Domain and X-OpenDSR-Signature (Base64 signature of the body
with SHA-256); the spec requires them on create, status and cancel only, so errors and injected
faults (a 429 with Retry-After, a 5xx) are unsigned unless `sign_errors`. On every state change the
fake POSTs a signed status callback to each `status_callback_urls` entry, retrying failures, and
keeps a copy (`sent_callbacks`) that a test can replay as an eavesdropper would.
`lose_next_created()` makes the next create happen but answers it 502, as a lost 201 looks.

UNCONFIRMED in the spec, hence switches: the answer to a repeated subject_request_id
(`duplicate_status`: 201 with the existing request, or the spec's only error, a 400 with reason
`duplicate`), whether errors are signed (`sign_errors`), the RSA padding (`rsa_padding`), and the
v1 header names (`legacy_headers`). Jobs progress when a test calls
`advance()`/`finish_all()`. `make_pki()` builds a throwaway CA and signing certificate at run time:
no key is ever committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
IDENTITY_TYPES = ("controller_customer_id", "email", "android_advertising_id", "ios_advertising_id",
                  "android_id", "ios_vendor_id")
IDENTITY_FORMATS = ("raw", "sha1", "md5", "sha256")
NEXT_STATUS = {"pending": "in_progress", "in_progress": "completed"}


# -- a throwaway PKI ---------------------------------------------------------------------------
def new_key(kind: Literal["rsa", "ec"] = "ec") -> PrivateKey:
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Erasure pipeline tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "OpenDSR Test CA", key: PrivateKey | None = None,
            ) -> tuple[x509.Certificate, PrivateKey]:
    key = key or new_key("ec")
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256()))
    return certificate, key


def make_leaf(domain: str, issuer: tuple[x509.Certificate, PrivateKey] | None, key: PrivateKey | None = None,
              not_before: datetime | None = None, not_after: datetime | None = None,
              ) -> tuple[x509.Certificate, PrivateKey]:
    """A signing certificate for `domain`; `issuer=None` makes it self-signed."""
    key = key or new_key("ec")
    now = datetime.now(UTC)
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder().subject_name(_name(domain))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else _name(domain))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()),  # type: ignore[arg-type]
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


@dataclass
class Pki:
    """A CA and one processor signing certificate issued by it."""

    domain: str
    ca: x509.Certificate
    ca_key: PrivateKey
    leaf: x509.Certificate
    key: PrivateKey

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    @property
    def leaf_pem(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.PEM)


def make_pki(domain: str = "opendsr.fake-processor.test", key_kind: Literal["rsa", "ec"] = "ec") -> Pki:
    ca, ca_key = make_ca()
    leaf, key = make_leaf(domain, (ca, ca_key), new_key(key_kind))
    return Pki(domain, ca, ca_key, leaf, key)


def sign(key: PrivateKey, body: bytes, rsa_padding: Literal["pkcs1v15", "pss"] = "pkcs1v15") -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15() if rsa_padding == "pkcs1v15"
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH))
        return base64.b64encode(key.sign(body, pad, hashes.SHA256())).decode()
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


# -- the processor -----------------------------------------------------------------------------
@dataclass
class _Request:
    body: dict[str, Any]
    controller_id: str
    received_time: str
    expected_completion_time: str
    status: str = "pending"
    identities: list[tuple[str, str, str]] = field(default_factory=list)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def error(code: int, message: str, reason: str = "invalid") -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"domain": "OpenDSR", "reason": reason, "message": message}]}}


class FakeOpenDsr(FakeProcessor):
    name = "opendsr"

    def __init__(self, credentials: set[tuple[str, str]], signing_key: PrivateKey, certificate_pem: bytes,
                 domain: str = "opendsr.fake-processor.test", *,
                 duplicate_status: Literal[201, 400] = 201, sign_errors: bool = False,
                 rsa_padding: Literal["pkcs1v15", "pss"] = "pkcs1v15",
                 legacy_headers: bool = False, callback_attempts: int = 5,
                 callback_backoff_s: float = 0.05, controller_id: str | None = None) -> None:
        super().__init__()
        self.credentials = set(credentials)
        self.signing_key = signing_key
        self.certificate_pem = certificate_pem
        self.domain = domain
        self.duplicate_status = duplicate_status
        self.sign_errors = sign_errors
        self._lose_created = 0
        self.rsa_padding: Literal["pkcs1v15", "pss"] = rsa_padding
        self.legacy_headers = legacy_headers
        self.callback_attempts = callback_attempts
        self.callback_backoff_s = callback_backoff_s
        self.controller_id = controller_id or "controller-" + uuid.uuid4().hex[:8]
        self.requests: dict[str, _Request] = {}
        self.posts = 0  # every accepted POST /v2/requests, duplicates included
        self.people: set[tuple[str, str]] = set()  # (identity_type, raw value) the processor holds
        self.callback_log: list[tuple[str, str, int | None]] = []  # (url, request_status, HTTP status)
        # Every callback as sent (status, signed body, headers): what an eavesdropper could replay.
        self.sent_callbacks: list[tuple[str, bytes, dict[str, str]]] = []
        self._threads: list[threading.Thread] = []
        self._cert_server: ThreadingHTTPServer | None = None
        self._lock = threading.RLock()

    # -- test helpers ------------------------------------------------------------------------
    def add_person(self, identity_type: str, value: str) -> None:
        with self._lock:
            self.people.add((identity_type, value))

    def holds(self, identity_type: str, value: str) -> bool:
        with self._lock:
            return (identity_type, value) in self.people

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def set_status(self, subject_request_id: str, status: str) -> None:
        with self._lock:
            request = self.requests[subject_request_id]
            request.status = status
            if status == "completed":
                self._erase(request)
        self._notify(subject_request_id)

    def advance(self, subject_request_id: str | None = None) -> None:
        """One step: pending -> in_progress -> completed, with a callback per change."""
        with self._lock:
            ids = [subject_request_id] if subject_request_id else list(self.requests)
            changes = [(i, NEXT_STATUS[self.requests[i].status]) for i in ids
                       if self.requests[i].status in NEXT_STATUS]
        for request_id, status in changes:
            self.set_status(request_id, status)

    def finish_all(self) -> None:
        self.advance()
        self.advance()

    def lose_next_created(self) -> None:
        """The next create is made, but its 201 is lost: the client sees a 502."""
        with self._lock:
            self._lose_created += 1

    def wait_callbacks(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- signing ------------------------------------------------------------------------------
    def signed_headers(self, payload: bytes) -> dict[str, str]:
        prefix = "X-OpenGDPR" if self.legacy_headers else "X-OpenDSR"
        return {f"{prefix}-Processor-Domain": self.domain,
                f"{prefix}-Signature": sign(self.signing_key, payload, self.rsa_padding)}

    def _signed(self, reply: Reply) -> Reply:
        if reply.status >= 400 and not self.sign_errors:
            return reply
        # server.py serializes with json.dumps(reply.body): sign exactly those bytes.
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        reply.headers = {**(reply.headers or {}), **self.signed_headers(payload)}
        return reply

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        body = error(status, "Too many requests" if status == 429 else "Internal error",
                     "rateLimitExceeded" if status == 429 else "backendError")
        headers = {"Retry-After": str(int(reset_s))} if status == 429 else {}
        if self.sign_errors:
            headers.update(self.signed_headers(json.dumps(body).encode()))
        return Fault(status, body, headers)

    # -- HTTP -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        access = access_reply(self, method, path)  # systems check: see the block at the end
        if access is not None:
            return self._signed(access)
        if method == "GET" and path == "/v2/discovery":
            return self._signed(Reply(200, self.discovery()))
        if not self._authorized(headers.get("authorization", "")):
            return self._signed(Reply(401, error(401, "Invalid credentials", "unauthorized")))
        with self._lock:
            reply = self._route(method, path, body)
            if reply.status == 201 and self._lose_created:
                self._lose_created -= 1
                return Reply(502, error(502, "Bad gateway", "backendError"))
        return self._signed(reply)

    def discovery(self) -> dict[str, Any]:
        return {"api_version": "2.0",
                "supported_identities": [{"identity_type": t, "identity_format": f}
                                         for t in IDENTITY_TYPES for f in IDENTITY_FORMATS],
                "supported_subject_request_types": ["erasure", "access", "portability"],
                "processor_certificate": self.certificate_url}

    # The certificate is PEM, which server.py (JSON bodies only) cannot serve: a second small
    # server on the same host does.
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = super().start(host, port)
        fake = self

        class CertificateHandler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                found = self.path == "/v2/certificate.pem"
                payload = fake.certificate_pem if found else b""
                self.send_response(200 if found else 404)
                self.send_header("content-type", "application/x-pem-file")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._cert_server = ThreadingHTTPServer((host, 0), CertificateHandler)
        self._cert_server.daemon_threads = True
        threading.Thread(target=self._cert_server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="fake-opendsr-cert", daemon=True).start()
        return url

    @property
    def certificate_url(self) -> str:
        assert self._cert_server is not None, "start() the fake first"
        host, port = self._cert_server.server_address[:2]
        return f"http://{host!s}:{port}/v2/certificate.pem"

    def stop(self) -> None:
        super().stop()
        if self._cert_server is not None:
            self._cert_server.shutdown()
            self._cert_server.server_close()

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) in self.credentials

    def _route(self, method: str, path: str, body: Any) -> Reply:
        if path in ("/v2/requests", "/v2/requests/") and method == "POST":
            return self._create(body)
        if path.startswith("/v2/requests/"):
            request_id = path.removeprefix("/v2/requests/")
            request = self.requests.get(request_id)
            if request is None:
                return Reply(400, error(400, "Unknown subject_request_id", "notFound"))
            if method == "GET":
                return Reply(200, self._status_body(request_id, request))
            if method == "DELETE":
                if request.status != "pending":
                    return Reply(400, error(400, "Only a pending request can be cancelled", "notCancellable"))
                request.status = "cancelled"
                self._notify(request_id)
                return Reply(202, {"controller_id": self.controller_id,
                                   "received_time": request.received_time,
                                   "subject_request_id": request_id, "api_version": "2.0"})
            return Reply(405, error(405, "Requests cannot be updated", "methodNotAllowed"))
        return Reply(404, error(404, "Unknown route", "notFound"))

    def _create(self, body: Any) -> Reply:
        problem = _invalid(body)
        if problem:
            return Reply(400, error(400, problem))
        request_id = body["subject_request_id"]
        existing = self.requests.get(request_id)
        self.posts += 1
        if existing is not None:
            if self.duplicate_status == 400:
                return Reply(400, error(400, "subject_request_id already exists", "duplicate"))
            return Reply(self.duplicate_status, self._created_body(request_id, existing))
        now = datetime.now(UTC)
        request = _Request(body=body, controller_id=self.controller_id, received_time=rfc3339(now),
                           expected_completion_time=rfc3339(now + timedelta(days=7)),
                           identities=[(i["identity_type"], i["identity_format"], i["identity_value"])
                                       for i in body.get("subject_identities") or []])
        self.requests[request_id] = request
        self._notify(request_id)
        return Reply(201, self._created_body(request_id, request))

    def _created_body(self, request_id: str, request: _Request) -> dict[str, Any]:
        return {"controller_id": request.controller_id,
                "expected_completion_time": request.expected_completion_time,
                "received_time": request.received_time,
                "encoded_request": base64.b64encode(json.dumps(request.body).encode()).decode(),
                "subject_request_id": request_id}

    def _status_body(self, request_id: str, request: _Request) -> dict[str, Any]:
        return {"controller_id": request.controller_id,
                "expected_completion_time": request.expected_completion_time,
                "subject_request_id": request_id, "request_status": request.status, "api_version": "2.0"}

    def _erase(self, request: _Request) -> None:
        for identity_type, identity_format, value in request.identities:
            for person_type, raw in list(self.people):
                if person_type != identity_type:
                    continue
                candidates = {raw} if identity_format == "raw" else {
                    hashlib.new(identity_format, raw.encode()).hexdigest(),
                    hashlib.new(identity_format, raw.strip().lower().encode()).hexdigest()}
                if value in candidates or (identity_type == "email" and value.lower() == raw.lower()):
                    self.people.discard((person_type, raw))

    # -- callbacks ----------------------------------------------------------------------------
    def _notify(self, request_id: str) -> None:
        with self._lock:
            request = self.requests[request_id]
            urls = list(request.body.get("status_callback_urls") or [])
            snapshot = self._status_body(request_id, request)
        for url in urls:
            body = {**snapshot, "status_callback_url": url}
            thread = threading.Thread(target=self._deliver, args=(url, body), daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)

    def _deliver(self, url: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json", **self.signed_headers(payload)}
        with self._lock:
            self.sent_callbacks.append((body["request_status"], payload, headers))
        for attempt in range(self.callback_attempts):
            status: int | None = None
            try:
                status = requests.post(url, data=payload, headers=headers, timeout=5,
                                       allow_redirects=False).status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.callback_log.append((url, body["request_status"], status))
            if status is not None and 200 <= status < 300:
                return
            time.sleep(self.callback_backoff_s * (2 ** attempt))


def _invalid(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the request body must be an object"
    for name in ("regulation", "subject_request_id", "subject_request_type", "submitted_time"):
        if not isinstance(body.get(name), str):
            return f"{name} is required"
    if body["regulation"] not in ("gdpr", "ccpa"):
        return "regulation must be gdpr or ccpa"
    if not UUID4.match(body["subject_request_id"]):
        return "subject_request_id must be a lowercase UUID v4"
    if body["subject_request_type"] not in ("erasure", "access", "portability"):
        return "unsupported subject_request_type"
    try:
        datetime.fromisoformat(body["submitted_time"].replace("Z", "+00:00"))
    except ValueError:
        return "submitted_time must be RFC 3339"
    identities = body.get("subject_identities")
    if not isinstance(identities, list) or not identities:
        return "subject_identities is required"
    for identity in identities:
        if not isinstance(identity, dict) or identity.get("identity_type") not in IDENTITY_TYPES:
            return "unsupported identity_type"
        if identity.get("identity_format") not in IDENTITY_FORMATS or not identity.get("identity_value"):
            return "identity_format and identity_value are required"
    urls = body.get("status_callback_urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        return "status_callback_urls must be a list of URLs"
    return None


# == Systems check (erasure systems check): what discovery says the processor takes =================
# Additive block. Discovery (§6) lists the supported subject request types and identities; the
# systems check compares them with what the connector sends. `support` is the switch that narrows
# them (a processor taking access requests only, or raw e-mails only).

def support(fake: FakeOpenDsr, request_types: list[str] | None = None,
            identities: list[tuple[str, str]] | None = None) -> None:
    """Discovery now lists only these request types and (identity_type, identity_format) pairs."""
    fake.__dict__["supported"] = (request_types, identities)


def access_reply(fake: FakeOpenDsr, method: str, path: str) -> Reply | None:
    supported = fake.__dict__.get("supported")
    if supported is None or method != "GET" or path != "/v2/discovery":
        return None
    request_types, identities = supported
    document = fake.discovery()
    if request_types is not None:
        document["supported_subject_request_types"] = list(request_types)
    if identities is not None:
        document["supported_identities"] = [{"identity_type": t, "identity_format": f} for t, f in identities]
    return Reply(200, document)
