"""What every processor fake shares: a threaded HTTP server, JSON replies, fault injection.

Control endpoints under `/__fake__/` let tests and the demo inject faults the
way the real processor produces them (a 429 with that processor's own headers,
a 500, latency) without the connector knowing it talks to a fake.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit


@dataclass
class Fault:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Exchange:
    """One request a fake answered and its answer, as they crossed the wire (for contract checks)."""

    fake: str
    method: str
    target: str  # path and query, as sent (still URL-encoded)
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int
    response_headers: dict[str, str]  # lower-cased names
    response_body: bytes


ExchangeObserver = Callable[["FakeProcessor", Exchange], None]
_observers: list[ExchangeObserver] = []
_observers_lock = threading.Lock()


def observe_exchanges(observer: ExchangeObserver) -> Callable[[], None]:
    """Call `observer` with every exchange any fake serves (control calls excepted), before the
    client can read the answer; returns the function that stops it."""
    with _observers_lock:
        _observers.append(observer)

    def stop() -> None:
        with _observers_lock:
            if observer in _observers:
                _observers.remove(observer)

    return stop


class _HeldWriter:
    """The handler's output, held back while `hold` is set and sent on flush: observers see an
    exchange before its client does, so nothing a test asserts can race them."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.hold = False
        self.held = bytearray()

    def write(self, data: bytes) -> int:
        if not self.hold:
            return self.raw.write(data)
        self.held.extend(data)
        return len(data)

    def flush(self) -> None:
        if self.held:
            self.raw.write(bytes(self.held))
            self.held.clear()
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class FakeState:
    """Thread-safe shared state: queued faults, latency, counters."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults: deque[Fault] = deque()
        self.latency_s = 0.0
        self.responses: Counter[int] = Counter()

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None


class FakeProcessor:
    """Subclasses implement `handle(method, path, query, headers, body) -> Reply`."""

    name = "fake"

    def __init__(self) -> None:
        self.state = FakeState()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override -------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: Any) -> Reply:
        raise NotImplementedError

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        return Fault(status, {"message": "injected fault"}, {})

    def extra_headers(self) -> dict[str, str]:
        return {}

    def control(self, action: str, body: Any) -> Reply:
        if action == "faults":
            for _ in range(int(body.get("count", 1))):
                fault = self.fault_reply(int(body["status"]), float(body.get("reset_s", 1)))
                with self.state.lock:
                    self.state.faults.append(fault)
            return Reply(204)
        if action == "latency":
            self.state.latency_s = float(body["delay_s"])
            return Reply(204)
        if action == "stats":
            with self.state.lock:
                return Reply(200, {"responses": {str(k): v for k, v in self.state.responses.items()}})
        return Reply(404, {"message": f"unknown control action {action}"})

    # -- serving -----------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Send head and body in one segment: split writes meet the client's delayed ACK
            # and every answer would take 40 ms, which no real processor adds.
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines carry identities in paths: never log them

            def setup(self) -> None:
                super().setup()
                self.wfile = _HeldWriter(self.wfile)  # type: ignore[assignment]

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                with _observers_lock:
                    observers = list(_observers)
                if not observers or self.path.startswith("/__fake__/"):
                    self._answer(raw)
                    return
                writer: _HeldWriter = self.wfile  # type: ignore[assignment]
                writer.hold = True
                try:
                    self._answer(raw)
                finally:
                    writer.hold = False
                status, response_headers, response_body = _parse_answer(bytes(writer.held))
                exchange = Exchange(fake.name, self.command, self.path,
                                    {k.lower(): v for k, v in self.headers.items()}, raw,
                                    status, response_headers, response_body)
                for observer in observers:
                    observer(fake, exchange)

            def _answer(self, raw: bytes) -> None:
                parts = urlsplit(self.path)
                try:
                    content_type = self.headers.get("content-type", "")
                    form = content_type.startswith("application/x-www-form-urlencoded")
                    body = dict(parse_qsl(raw.decode())) if form else json.loads(raw) if raw else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self._reply(Reply(400, {"code": "invalid_parameter", "message": "bad JSON"}))
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                if parts.path.startswith("/__fake__/"):
                    self._reply(fake.control(parts.path.removeprefix("/__fake__/"), body or {}))
                    return
                if fake.state.latency_s:
                    time.sleep(fake.state.latency_s)
                fault = fake.state.next_fault()
                if fault is not None:
                    self._reply(Reply(fault.status, fault.body, fault.headers))
                    return
                reply = fake.handle(self.command, parts.path, parse_qs(parts.query), headers, body)
                self._reply(reply)

            def _reply(self, reply: Reply) -> None:
                with fake.state.lock:
                    fake.state.responses[reply.status] += 1
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for key, value in {**fake.extra_headers(), **(reply.headers or {})}.items():
                    self.send_header(key, value)
                if payload and "content-type" not in {k.lower() for k in (reply.headers or {})}:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def serve_forever(self, host: str, port: int) -> None:
        self.start(host, port)
        assert self._thread is not None
        self._thread.join()


class TokenBucket:
    """Requests allowed per window; tells how many remain and when the window resets."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._window_start = time.monotonic()
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.window_s:
                self._window_start, self._used = now, 0
            reset_s = self.window_s - (now - self._window_start)
            if self._used >= self.limit:
                return False, 0, reset_s
            self._used += 1
            return True, self.limit - self._used, reset_s
