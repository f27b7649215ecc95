"""Serve the desk app on a real loopback port for HTTP and browser tests."""

from __future__ import annotations

import httpx

from pipeline.devstack.serving import serve

__all__ = ["form_token", "serve"]


def form_token(client: httpx.Client, path: str = "/login") -> str:
    """The CSRF token of the form on `path` (the login form's, before any session)."""
    import re

    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert match, f"the form on {path} carries a CSRF token"
    return match.group(1)


def login(url: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False)
    form = {"username": name, "password": password, "csrf": form_token(client)}
    response = client.post("/login", data=form)
    assert response.status_code == 303, response.text
    return client


def csrf(client: httpx.Client, request_id: str) -> str:
    import re

    page = client.get(f"/requests/{request_id}").text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match, "the page carries the session's form token"
    return match.group(1)
