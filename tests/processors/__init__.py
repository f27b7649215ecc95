"""One case per processor connector, run through the same conformance tests (tests/test_processors.py)."""

from __future__ import annotations

import importlib
from typing import Any

CASE_MODULES = [
    "tests.processors.case_brevo",
    "tests.processors.case_intercom",
    "tests.processors.case_stripe",
    "tests.processors.case_mailchimp",
    "tests.processors.case_mailjet",
    "tests.processors.case_hubspot",
    "tests.processors.case_zendesk",
    "tests.processors.case_auth0",
    "tests.processors.case_sendgrid",
    "tests.processors.case_segment",
    "tests.processors.case_mixpanel",
    "tests.processors.case_ga4",
    "tests.processors.case_opendsr",
]


def load_cases() -> list[Any]:
    cases = []
    for name in CASE_MODULES:
        try:
            cases.append(importlib.import_module(name).Case())
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return cases
