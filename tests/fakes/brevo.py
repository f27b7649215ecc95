"""The demo's fake Brevo with the account's own registered address, as the contract has it.

Brevo's DELETE /v3/contacts/{identifier} answers 405 "You're not allowed to delete registered
email contact with Brevo" for the address the account is registered with (the one
GET /v3/account answers): a refusal, not a routing error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.devstack.fake_server import Reply

ACCOUNT_EMAIL = "ops@site.example"  # what the demo fake's GET /v3/account answers
REGISTERED_REFUSAL = {"code": "method_not_allowed",
                      "message": "You're not allowed to delete registered email contact with Brevo"}


class FakeBrevoAccount(FakeBrevo):
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        if method == "DELETE" and path.startswith("/v3/contacts/"):
            identifier = unquote(path.removeprefix("/v3/contacts/"))
            by_email = query.get("identifierType", ["email_id"])[0] == "email_id"
            if by_email and identifier.lower() == ACCOUNT_EMAIL:
                return Reply(405, dict(REGISTERED_REFUSAL))
        return super()._route(method, path, query, body)
