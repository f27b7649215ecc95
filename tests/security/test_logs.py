"""No personal data in logs at any level: with ERASURE_LOG_LEVEL=DEBUG, a processor call whose URL
carries an e-mail leaves no trace of it (the HTTP libraries' own loggers stay at WARNING)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.cli.common import QUIET_LIBRARIES

EMAIL = "log.person@example.test"
ROOT = Path(__file__).resolve().parents[2]

# A command's process: the one logging set-up at DEBUG, then a connector's call to a processor.
SCRIPT = textwrap.dedent(f"""
    import logging, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from connectors.client import ProcessorClient
    from pipeline.cli.common import configure_logging
    from pipeline.settings import load_settings

    class Processor(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):  # the fake's own access log is not the pipeline's
            pass

    server = HTTPServer(("127.0.0.1", 0), Processor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configure_logging(load_settings())
    logging.getLogger("pipeline.test").debug("debug lines are on")
    with ProcessorClient("crm", f"http://127.0.0.1:{{server.server_port}}") as client:
        client.send("GET", "/v3/contacts/{{identifier}}", {{"identifier": "{EMAIL}"}})
    server.shutdown()
""")


def test_debug_logging_of_a_processor_call_holds_no_email() -> None:
    env = {**os.environ, "ERASURE_LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    logs = result.stdout + result.stderr
    assert "debug lines are on" in logs, "the level really is DEBUG"
    assert EMAIL not in logs and "log.person%40example.test" not in logs and "log.person" not in logs


def test_the_http_libraries_are_all_pinned() -> None:
    assert {"urllib3", "requests", "httpx", "httpcore", "kafka"} <= set(QUIET_LIBRARIES)
