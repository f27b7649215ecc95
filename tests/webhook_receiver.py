"""A webhook receiver, as the contact-form backend would run it: checks every signature."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline import notifications

SECRET = "whsec-test"


class Receiver:
    """A real HTTP endpoint, as the contact-form backend would run."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, Any], bool]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                ok = notifications.verify(SECRET, body, self.headers.get(notifications.SIGNATURE_HEADER, ""))
                receiver.received.append((json.loads(body), ok))
                status = 500 if receiver.fail_first > 0 else 204
                receiver.fail_first -= 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/erasure"

    def stop(self) -> None:
        self.server.shutdown()
