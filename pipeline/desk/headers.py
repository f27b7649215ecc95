"""Security headers on every answer: a Content-Security-Policy that allows only the desk's own origin
(its one inline `<style>` per page allowed by hash, no script at all, no framing), nosniff, no referrer,
and `Cache-Control: no-store` (the desk's pages show people's requests: no cache keeps a copy)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEMPLATES_DIR = Path(__file__).parent / "templates"
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def style_hashes(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    """CSP sources for the templates' inline styles (rendered verbatim: no template tag inside)."""
    sources = set()
    for template in sorted(templates_dir.glob("*.html")):
        for style in _STYLE.findall(template.read_text(encoding="utf-8")):
            digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
            sources.add(f"'sha256-{digest}'")
    return sorted(sources)


def content_security_policy() -> str:
    return "; ".join([
        "default-src 'self'", "script-src 'none'", f"style-src {' '.join(style_hashes())}",
        "img-src 'self' data:", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
        "frame-ancestors 'none'"])


class SecurityHeaders:
    """ASGI middleware: adds the headers to every HTTP answer, keeping any a route set itself.

    Outermost (`HardenedFastAPI`): inside Starlette's error and body-limit layers it would miss
    the 500 of an unhandled error and the 413 of a body over the cap, both answered out there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = {
            "content-security-policy": content_security_policy(),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin",
            "cache-control": "no-store",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HardenedFastAPI(FastAPI):
    """A FastAPI application whose every answer carries the security headers: `SecurityHeaders`
    wraps the whole middleware stack, Starlette's ServerErrorMiddleware (500) and FastAPI's body
    limit (413) included, which `add_middleware` would place outside it."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())
