"""One case per processor connector, run through the same conformance tests (tests/test_processors.py)."""

CASE_MODULES = [
    "tests.processors.case_brevo",
    "tests.processors.case_intercom",
]
