"""A fake Auth0 (Authentication API token endpoint + Management API v2 users).

`POST /oauth/token` with `grant_type=client_credentials`, `client_id`, `client_secret` and
`audience` answers `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`; bad
client credentials answer 401 `{"error": "access_denied", "error_description": "Unauthorized"}`.
The Management API takes the bearer token (401 `Invalid token` / `Expired token` otherwise):
`GET /api/v2/users-by-email?email=` answers an array of users (the address is matched
case-sensitively, as documented), and `DELETE /api/v2/users/{user_id}` answers 204, also for
a user that does not exist ("by design"). Every Management API response carries
`x-ratelimit-limit`, `-remaining` and `-reset` (unix time); an empty bucket answers 429.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

ACCESS_DENIED = {"error": "access_denied", "error_description": "Unauthorized"}
TOO_MANY = {"statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached",
            "errorCode": "too_many_requests"}


def unauthorized(message: str) -> dict[str, Any]:
    return {"statusCode": 401, "error": "Unauthorized", "message": message, "attributes": {"error": message}}


class FakeAuth0(FakeProcessor):
    name = "auth0"

    def __init__(self, clients: dict[str, str], audience: str | None = None, token_lifetime_s: int = 86400,
                 limit_per_window: int = 120, window_s: float = 60.0,
                 canonical_domain: str | None = None) -> None:
        super().__init__()
        self.clients = dict(clients)
        # Served as a custom domain of the tenant `canonical_domain`: the Management API's audience
        # is the canonical one, never this server's own URL. None: this server's own {url}/api/v2/.
        self.audience = audience or (f"https://{canonical_domain}/api/v2/" if canonical_domain else None)
        self.audiences_asked: list[str] = []
        self.token_lifetime_s = token_lifetime_s
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.tokens_issued = 0
        self.delete_paths: list[str] = []  # as sent, to see the `|` was URL-encoded
        self._lock = threading.Lock()

    # -- the store, for seeding and observing -----------------------------
    def add_user(self, email: str, connection: str = "auth0") -> str:
        user_id = f"{connection}|{uuid.uuid4().hex[:24]}"
        with self._lock:
            self.users[user_id] = {"user_id": user_id, "email": email, "email_verified": True,
                                   "identities": [{"connection": "Username-Password-Authentication",
                                                   "provider": connection, "user_id": user_id.split("|")[1],
                                                   "isSocial": connection != "auth0"}]}
        return user_id

    def has_user(self, email: str) -> bool:
        with self._lock:
            return any(u["email"].lower() == email.lower() for u in self.users.values())

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # -- replies -------------------------------------------------------------
    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.bucket.limit), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(math.ceil(time.time() + reset_s))}

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, dict(TOO_MANY), self.rate_headers(0, reset_s))
        return Fault(status, {"statusCode": status, "error": "Internal Server Error",
                              "message": "Internal Server Error"}, {})

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if method == "POST" and path == "/oauth/token":
            return scoped_token(self, self._token(body or {}), body or {})  # systems check: block at the end
        if not path.startswith("/api/v2/"):
            return Reply(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return Reply(401, unauthorized("Invalid token"))
        if time.monotonic() >= expiry:
            return Reply(401, unauthorized("Expired token received for JSON Web Token validation"))
        allowed, remaining, reset_s = self.bucket.take()
        rate = self.rate_headers(remaining, reset_s)
        if not allowed:
            return Reply(429, dict(TOO_MANY), rate)
        refused = insufficient_scope(self, method, token)  # systems check: see the block at the end
        if refused is not None:
            return refused
        with self._lock:
            reply = self._route(method, path, query)
        reply.headers = {**rate, **(reply.headers or {})}
        return reply

    def _token(self, body: dict[str, Any]) -> Reply:
        if body.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type",
                               "error_description": "Unsupported grant type: " + str(body.get("grant_type"))})
        client_id, secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        if not client_id or self.clients.get(client_id) != secret:
            return Reply(401, dict(ACCESS_DENIED))
        audience = self.audience or f"{self.url}/api/v2/"
        self.audiences_asked.append(str(body.get("audience")))
        if body.get("audience") != audience:
            description = f"Service not enabled within domain: {body.get('audience')}"
            return Reply(403, {"error": "access_denied", "error_description": description})
        token = uuid.uuid4().hex
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime_s
            self.tokens_issued += 1
        return Reply(200, {"access_token": token, "scope": "read:users delete:users",
                           "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Reply:
        if method == "GET" and path == "/api/v2/users-by-email":
            email = query.get("email", [""])[0]
            if not email:
                return Reply(400, {"statusCode": 400, "error": "Bad Request",
                                   "message": "Query validation error: 'Missing required property: email'",
                                   "errorCode": "invalid_query_string"})
            return Reply(200, [dict(u) for u in self.users.values() if u["email"] == email])
        if path.startswith("/api/v2/users/"):
            user_id = unquote(path.removeprefix("/api/v2/users/"))
            if method == "DELETE":
                self.users.pop(user_id, None)  # 204 whether or not the user existed: "by design"
                self.delete_paths.append(path)
                return Reply(204)
            if method == "GET":
                user = self.users.get(user_id)
                if user is None:
                    return Reply(404, {"statusCode": 404, "error": "Not Found",
                                       "message": "The user does not exist.", "errorCode": "inexistent_user"})
                return Reply(200, dict(user))
        return Reply(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})


# == Systems check (erasure systems check): the scopes a client is granted ==========================
# Additive block. A client-credentials token carries the scopes the application is granted on the
# Management API, in the answer's `scope`; a token without the scope a call needs is answered 403
# "Insufficient scope, expected any of: ..." (auth0/SOURCE.md fact 6); an application granted no
# scope at all gets no token (403 access_denied). `grant_client_scopes` is the switch; a client
# not given one holds read:users and delete:users.

DEFAULT_SCOPES = ("read:users", "delete:users")


def grant_client_scopes(fake: FakeAuth0, client_id: str, scopes: list[str]) -> None:
    fake.__dict__.setdefault("client_scopes", {})[client_id] = list(scopes)


def scoped_token(fake: FakeAuth0, reply: Reply, grant: dict[str, Any]) -> Reply:
    """The token answer with the client's granted scopes, remembered for the Management API."""
    if reply.status != 200 or not isinstance(reply.body, dict):
        return reply
    scopes = fake.__dict__.get("client_scopes", {}).get(str(grant.get("client_id")), list(DEFAULT_SCOPES))
    if not scopes:
        description = "Client has not been granted scopes: read:users, delete:users"
        return Reply(403, {"error": "access_denied", "error_description": description})
    fake.__dict__.setdefault("token_scopes", {})[reply.body["access_token"]] = set(scopes)
    return Reply(200, {**reply.body, "scope": " ".join(scopes)})


def insufficient_scope(fake: FakeAuth0, method: str, token: str) -> Reply | None:
    needed = "delete:users" if method == "DELETE" else "read:users"
    granted = fake.__dict__.get("token_scopes", {}).get(token, set(DEFAULT_SCOPES))
    if needed in granted:
        return None
    return Reply(403, {"statusCode": 403, "error": "Forbidden", "errorCode": "insufficient_scope",
                       "message": f"Insufficient scope, expected any of: {needed}"})
