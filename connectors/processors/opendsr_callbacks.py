"""Verify what an OpenDSR processor signs: status callbacks (and, optionally, API responses).

The controller-side checks of OpenDSR 2.0 (§4, §8.8 and the security guidelines), in order:

1. `X-OpenDSR-Processor-Domain` must be on our allow-list, else 401;
2. the processor's certificate (from its `/discovery` -> `processor_certificate`, cached for the
   certificate's lifetime) must chain to one of our trust anchors, be within its validity period,
   carry the domain in its SAN and not be self-signed, else 401;
3. the Base64 `X-OpenDSR-Signature` must verify over the RAW body with SHA-256, before any
   parsing, else 403 (§8.8; the security guidelines say 400: the spec wins here);
4. only then is the body parsed (400 if it is not a status object), `status_callback_url`
   (required by §8.6) compared with our own endpoint, and `controller_id` with ours (403).

Each submission to a processor is its own OpenDSR request: the first (attempt 1) uses our
request id as `subject_request_id` and our plain callback URL; a later one (an officer's retry,
a re-drive) gets a `subject_request_id` derived from the request id and its attempt, and a
callback URL naming both (`?request_id=...&attempt=N`). The processor signs the callback body,
which repeats both: `CallbackBinding` says which attempt a callback answers, so the receiver can
refuse one that answers an attempt already superseded (a captured callback replayed later).

Pure: no web framework. The web app calls `verify_callback` with the request's headers and raw
bytes, answers `error.http_status` on `CallbackRejected`, 202 otherwise. Revocation (CRL/OCSP) is
not checked: `cryptography`'s verifier does not do it. The v1 header names (`X-OpenGDPR-*`, §10.1)
are accepted too. Messages name the check and the processor domain, never the data subject.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

DOMAIN_HEADERS = ("x-opendsr-processor-domain", "x-opengdpr-processor-domain")
SIGNATURE_HEADERS = ("x-opendsr-signature", "x-opengdpr-signature")
REQUEST_STATUSES = frozenset({"pending", "in_progress", "completed", "cancelled"})
CALLBACK_REQUIRED = ("controller_id", "status_callback_url", "subject_request_id", "request_status",
                     "expected_completion_time")


class CallbackRejected(Exception):
    """A signed message failed a check; `http_status` is what the receiver answers."""

    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DomainNotAllowed(CallbackRejected):
    http_status = 401


class CertificateRejected(CallbackRejected):
    http_status = 401


class SignatureInvalid(CallbackRejected):
    http_status = 403


class MalformedCallback(CallbackRejected):
    http_status = 400


class NotOurController(CallbackRejected):
    """Signed by the processor, but for another of its controllers."""

    http_status = 403


Fetch = Callable[[str], bytes]


def _default_fetch(url: str) -> bytes:
    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return response.content


@dataclass
class _Cached:
    leaf: x509.Certificate
    intermediates: list[x509.Certificate]
    expires_at: datetime
    fetched_at_monotonic: float


@dataclass
class CallbackTrust:
    """Trust anchors, where each processor's discovery lives, and the certificate cache.

    `discovery_urls` maps a processor domain to its discovery URL; a domain not listed uses
    `https://{domain}/v2/discovery`. `now` and `fetch` are injectable for tests.
    """

    anchors: list[x509.Certificate]
    discovery_urls: dict[str, str] = field(default_factory=dict)
    fetch: Fetch = _default_fetch
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    refetch_interval_s: float = 300.0
    _cache: dict[str, _Cached] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_pem(cls, pem: bytes, **kwargs: Any) -> CallbackTrust:
        return cls(anchors=x509.load_pem_x509_certificates(pem), **kwargs)

    def discovery_url(self, domain: str) -> str:
        return self.discovery_urls.get(domain, f"https://{domain}/v2/discovery")

    def forget(self, domain: str) -> None:
        with self._lock:
            self._cache.pop(domain, None)

    def certificate_for(self, domain: str, refresh: bool = False) -> x509.Certificate:
        """The domain's validated signing certificate, from the cache or its discovery."""
        now = self.now()
        with self._lock:
            cached = self._cache.get(domain)
        if cached is not None and not refresh and cached.expires_at > now:
            self._validate(domain, cached.leaf, cached.intermediates, now)  # expiry and anchors again
            return cached.leaf
        leaf, intermediates = self._download(domain)
        self._validate(domain, leaf, intermediates, now)
        with self._lock:
            self._cache[domain] = _Cached(leaf, intermediates, leaf.not_valid_after_utc, time.monotonic())
        return leaf

    def may_refetch(self, domain: str) -> bool:
        """A signature failure may mean a rotated certificate: re-download, but not on every forgery."""
        with self._lock:
            cached = self._cache.get(domain)
        if cached is None:
            return False
        return time.monotonic() - cached.fetched_at_monotonic >= self.refetch_interval_s

    def _download(self, domain: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
        discovery_url = self.discovery_url(domain)
        try:
            discovery = json.loads(self.fetch(discovery_url))
            cert_url = discovery["processor_certificate"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            raise CertificateRejected(f"discovery of {domain} gave no processor_certificate") from None
        if not isinstance(cert_url, str):
            raise CertificateRejected(f"discovery of {domain} gave no processor_certificate")
        cert_host = urlsplit(cert_url).hostname
        if cert_host not in (domain, urlsplit(discovery_url).hostname):
            raise CertificateRejected(f"the certificate URL of {domain} is on another domain")
        try:
            certificates = x509.load_pem_x509_certificates(self.fetch(cert_url))
        except requests.RequestException:
            raise CertificateRejected(f"the certificate of {domain} could not be downloaded") from None
        except ValueError:
            raise CertificateRejected(f"the certificate of {domain} is not PEM") from None
        return certificates[0], certificates[1:]

    def _validate(self, domain: str, leaf: x509.Certificate, intermediates: list[x509.Certificate],
                  now: datetime) -> None:
        if _self_signed(leaf):
            raise CertificateRejected(f"the certificate of {domain} is self-signed")
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise CertificateRejected(f"the certificate of {domain} is outside its validity period")
        if not self.anchors:
            raise CertificateRejected("no trust anchors are configured")
        # A signing certificate, not a TLS server's: any extended key usage, the domain in the SAN.
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        verifier = (PolicyBuilder().store(Store(self.anchors)).time(now)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
                    .build_server_verifier(x509.DNSName(domain)))
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise CertificateRejected(f"the certificate of {domain} is not valid: {_reason(exc)}") from None


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _reason(exc: VerificationError) -> str:
    text = str(exc).split(" (encountered processing", 1)[0]
    if "not valid at validation time" in text:
        return "outside its validity period"
    if "subjectAltName" in text:
        return "the domain is not in its subject alternative names"
    return "it does not chain to a trusted CA"


def _header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        value = lowered.get(name)
        if value:
            return value.strip()
    return None


def signature_valid(certificate: x509.Certificate, signature: bytes, raw_body: bytes) -> bool:
    """FIPS 186-4 signatures over SHA-256: RSA (PKCS#1 v1.5 or PSS) or ECDSA."""
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, raw_body, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                key.verify(signature, raw_body, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                            salt_length=padding.PSS.AUTO), hashes.SHA256())
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, raw_body, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def verify_signed(headers: Mapping[str, str], raw_body: bytes, allowed_domains: Iterable[str],
                  trust: CallbackTrust) -> str:
    """Checks 1-3 on any signed OpenDSR message; returns the verified processor domain."""
    domain = _header(headers, DOMAIN_HEADERS)
    if not domain:
        raise DomainNotAllowed("X-OpenDSR-Processor-Domain is missing")
    domain = domain.lower()
    if domain not in {d.lower() for d in allowed_domains}:
        raise DomainNotAllowed("the processor domain is not on the allow-list")
    encoded = _header(headers, SIGNATURE_HEADERS)
    if not encoded:
        raise SignatureInvalid(f"X-OpenDSR-Signature is missing ({domain})")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"X-OpenDSR-Signature is not Base64 ({domain})") from None
    certificate = trust.certificate_for(domain)
    if signature_valid(certificate, signature, raw_body):
        return domain
    if trust.may_refetch(domain):
        certificate = trust.certificate_for(domain, refresh=True)
        if signature_valid(certificate, signature, raw_body):
            return domain
    raise SignatureInvalid(f"the signature does not match the body ({domain})")


@dataclass(frozen=True)
class CallbackBinding:
    """The submission a callback answers: our request and the attempt that created it there."""

    request_id: str
    attempt: int


@dataclass(frozen=True)
class VerifiedCallback:
    processor_domain: str  # lower-case, as checked against the allow-list
    body: dict[str, Any]
    binding: CallbackBinding


def submission_id(request_id: str, attempt: int) -> str:
    """The `subject_request_id` of the submission made at `attempt` (a UUID v4, as §7.1 asks).

    Attempt 1 is our request id itself; a later submission must be a new OpenDSR request (the
    processor answers a known id with the old, possibly cancelled, request), and derived, so that
    a repeat of the same attempt is still the same request."""
    request_id = request_id.lower()
    if attempt <= 1:
        return request_id
    digest = hashlib.sha256(f"opendsr-submission:{request_id}:{attempt}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def callback_url_for(base_url: str, request_id: str, attempt: int) -> str:
    """Our callback URL for the submission made at `attempt`."""
    if attempt <= 1:
        return base_url
    joiner = "&" if urlsplit(base_url).query else "?"
    return f"{base_url}{joiner}{urlencode({'request_id': request_id.lower(), 'attempt': attempt})}"


def callback_binding(body: Mapping[str, Any], domain: str,
                     expected_callback_url: str | None = None) -> CallbackBinding:
    """The attempt a verified callback answers, read from what the processor signed."""
    url, answered = str(body["status_callback_url"]), str(body["subject_request_id"]).lower()
    params = parse_qs(urlsplit(url).query)
    binding = CallbackBinding(answered, 1)
    if "attempt" in params:
        try:
            binding = CallbackBinding(str(uuid.UUID(params["request_id"][-1])), int(params["attempt"][-1]))
        except (KeyError, ValueError):
            raise MalformedCallback(f"the callback URL from {domain} names no request and attempt") from None
        if binding.attempt < 2 or submission_id(binding.request_id, binding.attempt) != answered:
            raise MalformedCallback(f"the callback from {domain} answers another subject_request_id "
                                    "than its callback URL names")
    if expected_callback_url is not None and url != callback_url_for(
            expected_callback_url, binding.request_id, binding.attempt):
        raise MalformedCallback(f"the callback from {domain} names another status_callback_url")
    return binding


def verified_callback(headers: Mapping[str, str], raw_body: bytes, allowed_domains: Iterable[str],
                      trust: CallbackTrust, *, expected_callback_url: str | None = None,
                      expected_controller_id: str | None = None) -> VerifiedCallback:
    """Verify a status callback: its processor, its body and the attempt it answers; raise
    `CallbackRejected` (see `http_status`)."""
    domain = verify_signed(headers, raw_body, allowed_domains, trust)
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedCallback(f"the callback from {domain} is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedCallback(f"the callback from {domain} is not an object")
    missing = [name for name in CALLBACK_REQUIRED if not isinstance(body.get(name), str)]
    if missing:
        raise MalformedCallback(f"the callback from {domain} lacks {missing[0]}")
    if body["request_status"] not in REQUEST_STATUSES:
        raise MalformedCallback(f"the callback from {domain} has an unknown request_status")
    if expected_controller_id is not None and body["controller_id"] != expected_controller_id:
        raise NotOurController(f"the callback from {domain} is for another controller_id than ours")
    return VerifiedCallback(domain, body, callback_binding(body, domain, expected_callback_url))


def verify_callback(headers: Mapping[str, str], raw_body: bytes, allowed_domains: Iterable[str],
                    trust: CallbackTrust, *, expected_callback_url: str | None = None,
                    expected_controller_id: str | None = None) -> dict[str, Any]:
    """Verify a status callback and return its body; raise `CallbackRejected` (see `http_status`)."""
    return verified_callback(headers, raw_body, allowed_domains, trust,
                             expected_callback_url=expected_callback_url,
                             expected_controller_id=expected_controller_id).body
