"""A fake Google Analytics User Deletion API v3 (upsert of userDeletionRequest).

Tokens come from a fake Google OAuth2 token endpoint (`token_url`, a second server so the
API's injected faults never hit it): a JWT bearer grant (RFC 7523) whose assertion is RS256-
signed by a registered service account's key, with `iss` the account, `aud` Google's token URL,
the `analytics.user.deletion` scope and a live `exp`, answers `{"access_token", "expires_in"}`
(`token_lifetime_s`, short); anything else is 400 `invalid_grant`. The fake has its own clock
(`advance`): a token past its expiry is 401, as Google answers after an hour.
OAuth2 bearer tokens, each granted a set of properties: an unknown token is 401 (`authError`),
a property the token may not touch is 403 `insufficientPermissions`. The upsert validates the
resource (`kind`, `id.type` CLIENT_ID|USER_ID|APP_INSTANCE_ID, one of propertyId/webPropertyId/
firebaseProjectId) and answers 200 with the resource plus `deletionRequestTime`; a repeat
replaces the stored request (one per property and id). The collected data of that user in that
property is dropped. Quotas: per-property QPS (1.5 by default) gives 403 `userRateLimitExceeded`
(or 429 RESOURCE_EXHAUSTED: `rate_limit_status`, the documentation names both); the daily
counters (500 a day per project and per property) give 403 `dailyLimitExceeded`. Every error
uses Google's envelope. Which shape a spent daily quota takes is left open by the docs (the v3
reason, or the newer quota errors), so a switch, `daily_limit_shape`: "dailyLimitExceeded"
(403, the default), "quotaExceeded" (403 reason quotaExceeded, status PERMISSION_DENIED, limit
"Queries per day") or "RESOURCE_EXHAUSTED" (429 with an ErrorInfo detail whose quota_limit is
per day).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

UPSERT = "/analytics/v3/userDeletion/userDeletionRequests:upsert"
ID_TYPES = ("CLIENT_ID", "USER_ID", "APP_INSTANCE_ID")
TARGETS = ("propertyId", "webPropertyId", "firebaseProjectId")
SCOPE = "https://www.googleapis.com/auth/analytics.user.deletion"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # the assertion's `aud`, wherever it is served


def service_account_key(directory: Path, email: str, token_uri: str,
                        key: rsa.RSAPrivateKey | None = None) -> tuple[Path, bytes]:
    """A service-account JSON key file (Google's format) and the public key the fake checks it with."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    path = directory / f"{email.split('@')[0]}.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "fake-project",
                                "private_key_id": uuid.uuid4().hex, "private_key": private_pem,
                                "client_email": email, "client_id": "1", "token_uri": token_uri}))
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public_pem


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGoogleTokenEndpoint(FakeProcessor):
    name = "google-oauth2"

    def __init__(self, owner: FakeGa4) -> None:
        super().__init__()
        self.owner = owner

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if method != "POST" or path != "/token":
            return Reply(404, {"error": "not_found"})
        return self.owner.grant(body if isinstance(body, dict) else {}, GOOGLE_TOKEN_AUDIENCE)


def google_error(code: int, reason: str, message: str, domain: str = "global",
                 status: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"errors": [{"domain": domain, "reason": reason, "message": message}],
                                      "code": code, "message": message}}
    if status:
        body["error"]["status"] = status
    return body


RATE_403 = google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded", "usageLimits")
RATE_429 = google_error(429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries'",
                        "usageLimits", "RESOURCE_EXHAUSTED")
DAILY_403 = google_error(403, "dailyLimitExceeded", "Daily Limit Exceeded", "usageLimits")
PER_DAY = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service "
           "'analytics.googleapis.com' for consumer 'project_number:1234'.")
QUOTA_403 = google_error(403, "quotaExceeded", PER_DAY, "usageLimits", "PERMISSION_DENIED")
EXHAUSTED_429: dict[str, Any] = {"error": {
    "code": 429, "message": PER_DAY, "status": "RESOURCE_EXHAUSTED",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com",
                 "metadata": {"quota_limit": "DefaultQueriesPerDayPerProject", "quota_limit_value": "500",
                              "quota_metric": "analytics.googleapis.com/default_queries",
                              "service": "analytics.googleapis.com", "consumer": "projects/1234"}}]}}
DAILY_SHAPES: dict[str, tuple[int, dict[str, Any]]] = {
    "dailyLimitExceeded": (403, DAILY_403), "quotaExceeded": (403, QUOTA_403),
    "RESOURCE_EXHAUSTED": (429, EXHAUSTED_429)}


class FakeGa4(FakeProcessor):
    name = "ga4"

    def __init__(self, tokens: dict[str, set[str]] | None = None, *,
                 service_accounts: dict[str, tuple[bytes, set[str]]] | None = None,
                 token_lifetime_s: int = 3600, qps_per_property: float = 1.5,
                 daily_per_property: int = 500, daily_per_project: int = 500,
                 rate_limit_status: Literal[403, 429] = 403,
                 daily_limit_shape: Literal["dailyLimitExceeded", "quotaExceeded",
                                            "RESOURCE_EXHAUSTED"] = "dailyLimitExceeded") -> None:
        super().__init__()
        self.daily_limit_shape = daily_limit_shape
        self.tokens = {token: set(properties) for token, properties in (tokens or {}).items()}
        self.service_accounts = dict(service_accounts or {})  # e-mail -> (public key PEM, properties)
        self.token_lifetime_s = token_lifetime_s
        self.expiry: dict[str, float] = {}  # minted token -> expiry on the fake's clock
        self.grants = 0
        self.refused_expired = 0
        self.token_endpoint = FakeGoogleTokenEndpoint(self)
        self._offset_s = 0.0
        self.qps_per_property = qps_per_property
        self.daily_per_property = daily_per_property
        self.daily_per_project = daily_per_project
        self.rate_limit_status = rate_limit_status
        self.collected: dict[str, set[tuple[str, str]]] = {}  # property -> {(id type, id)}
        self.deletion_requests: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.used_today: dict[str, int] = {}  # property -> queries today
        self.project_used_today = 0
        self.bodies: list[Any] = []
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.token_endpoint.start(host)
        return super().start(host, port)

    def stop(self) -> None:
        super().stop()
        self.token_endpoint.stop()

    @property
    def token_url(self) -> str:
        return f"{self.token_endpoint.url}/token"

    def now(self) -> float:
        return time.time() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on: tokens it issued expire as they would in real time."""
        with self._lock:
            self._offset_s += seconds

    def grant(self, form: dict[str, Any], audience: str) -> Reply:
        """The JWT bearer grant: verify the assertion, answer a short-lived access token."""
        claims = self._verified_claims(form, audience)
        if claims is None:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        with self._lock:
            token = "ya29.fake-" + uuid.uuid4().hex
            self.tokens[token] = set(self.service_accounts[claims["iss"]][1])
            self.expiry[token] = self.now() + self.token_lifetime_s
            self.grants += 1
        return Reply(200, {"access_token": token, "expires_in": self.token_lifetime_s,
                           "token_type": "Bearer"})

    def _verified_claims(self, form: dict[str, Any], audience: str) -> dict[str, Any] | None:
        if form.get("grant_type") != JWT_GRANT or not isinstance(form.get("assertion"), str):
            return None
        try:
            header_b64, claims_b64, signature_b64 = form["assertion"].split(".")
            header, claims = json.loads(_b64(header_b64)), json.loads(_b64(claims_b64))
            account = self.service_accounts.get(claims.get("iss"))
            if header.get("alg") != "RS256" or account is None:
                return None
            public_key = serialization.load_pem_public_key(account[0])
            assert isinstance(public_key, rsa.RSAPublicKey)
            public_key.verify(_b64(signature_b64), f"{header_b64}.{claims_b64}".encode(),
                              padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature, json.JSONDecodeError):
            return None
        live = float(claims.get("iat", 0)) - 300 <= time.time() < float(claims.get("exp", 0))  # real time
        scoped = SCOPE in str(claims.get("scope", "")).split()
        return claims if live and scoped and claims.get("aud") == audience else None

    # -- test helpers --------------------------------------------------------------------------
    def collect(self, property_id: str, user_id: str, id_type: str = "USER_ID") -> None:
        with self._lock:
            self.collected.setdefault(property_id, set()).add((id_type, user_id))

    def holds(self, property_id: str, user_id: str, id_type: str = "USER_ID") -> bool:
        with self._lock:
            return (id_type, user_id) in self.collected.get(property_id, set())

    def request_count(self, property_id: str) -> int:
        with self._lock:
            return len(self.deletion_requests.get(property_id, {}))

    def new_day(self) -> None:
        with self._lock:
            self.used_today.clear()
            self.project_used_today = 0

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 403:
            return Fault(403, RATE_403, {})
        if status == 429:
            return Fault(429, RATE_429, {})
        if status == 503:
            return Fault(503, google_error(503, "backendError", "Backend Error"), {})
        return Fault(status, google_error(status, "internalError", "Internal Error"), {})

    # -- HTTP --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        expired = token is not None and self.expiry.get(token, float("inf")) <= self.now()
        if expired:
            with self._lock:
                self.refused_expired += 1
        if token is None or token not in self.tokens or expired:
            return Reply(401, google_error(401, "authError", "Invalid Credentials", "global"),
                         {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if method != "POST" or path != UPSERT:
            return Reply(404, google_error(404, "notFound", "Not Found"))
        with self._lock:
            self.bodies.append(body)
            return self._upsert(token, body)

    def _upsert(self, token: str, body: Any) -> Reply:
        problem = _invalid(body)
        if problem:
            return Reply(400, google_error(400, "invalid", problem))
        target = next(name for name in TARGETS if body.get(name))
        scope = str(body[target])
        if scope not in self.tokens[token]:
            return Reply(403, google_error(403, "insufficientPermissions",
                                           "User does not have sufficient permissions for this property."))
        if self.project_used_today >= self.daily_per_project or \
                self.used_today.get(scope, 0) >= self.daily_per_property:
            return Reply(*DAILY_SHAPES[self.daily_limit_shape])
        bucket = self._buckets.setdefault(scope, TokenBucket(max(1, int(self.qps_per_property * 10)), 10.0))
        allowed, _, _ = bucket.take()
        if not allowed:
            return Reply(self.rate_limit_status, RATE_403 if self.rate_limit_status == 403 else RATE_429)
        self.project_used_today += 1
        self.used_today[scope] = self.used_today.get(scope, 0) + 1
        key = (body["id"]["type"], body["id"]["userId"])
        resource = {"kind": "analytics#userDeletionRequest", "id": dict(body["id"]), target: scope,
                    "deletionRequestTime": datetime.now(UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z")}
        self.deletion_requests.setdefault(scope, {})[key] = resource
        self.collected.get(scope, set()).discard(key)
        return Reply(200, resource)


def _invalid(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    if body.get("kind", "analytics#userDeletionRequest") != "analytics#userDeletionRequest":
        return "Invalid value for kind."
    identifier = body.get("id")
    if not isinstance(identifier, dict) or identifier.get("type") not in ID_TYPES:
        return "Invalid value for id.type."
    if not isinstance(identifier.get("userId"), str) or not identifier["userId"]:
        return "Required parameter: id.userId"
    if sum(1 for name in TARGETS if body.get(name)) != 1:
        return "Exactly one of propertyId, webPropertyId or firebaseProjectId is required."
    return None
