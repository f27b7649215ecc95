"""A fake Mailjet with sub-accounts: one API, each key pair reaching only its own account's contacts.

Mailjet: "you must remove the contacts from all accounts / subaccounts you currently own"; each
sub-account has its own API key pair. Each account is a `FakeMailjet` (not started on its own);
this server hands a request to the account whose credentials it carries (401 otherwise).
"""

from __future__ import annotations

import base64
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor, Reply
from tests.fakes.mailjet import FakeMailjet, mailjet_error


class FakeMailjetAccounts(FakeProcessor):
    name = "mailjet-accounts"

    def __init__(self, accounts: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.accounts = {name: FakeMailjet({keys}) for name, keys in accounts.items()}
        self._keys = {keys: name for name, keys in accounts.items()}

    def advance(self, seconds: float) -> None:
        for account in self.accounts.values():
            account.advance(seconds)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        value = headers.get("authorization", "").removeprefix("Basic ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        name = self._keys.get((user, password))
        if name is None:
            return Reply(401, mailjet_error(401, "API key authentication/authorization failure."))
        return self.accounts[name].handle(method, path, query, headers, body)
