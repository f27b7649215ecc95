"""Every processor connector says how sure its erasure is: confirmed or accepted, with residual data.

The table below is the README's "confirmed or accepted" column; a connector added without a
row here fails `test_every_case_has_an_expected_assurance`.
"""

from __future__ import annotations

from typing import Any

from tests.processors import load_cases
from tests.processors.common import ProcessorCase
from tests.test_processors import drive, person

EXPECTED: dict[str, str] = {
    "brevo": "confirmed", "stripe": "confirmed", "mailchimp": "confirmed", "mailjet": "accepted",
    "hubspot": "accepted", "zendesk": "confirmed", "intercom": "accepted", "auth0": "confirmed",
    "sendgrid": "confirmed", "segment": "confirmed", "mixpanel": "confirmed", "ga4": "accepted",
    "opendsr": "confirmed",
}
CASES = load_cases()


def test_every_case_has_an_expected_assurance() -> None:
    assert {c.type for c in CASES} == set(EXPECTED)




def test_an_erasure_says_confirmed_or_accepted(case: ProcessorCase, fake: Any) -> None:
    email = person()
    case.seed(fake, email)
    result, _ = drive(case, fake, email)
    assert result.status == case.final_status and result.evidence is not None
    assert result.evidence.assurance == EXPECTED[case.type]
    if result.evidence.assurance == "accepted":
        # What the processor still has until it keeps its word is named, never hidden.
        assert result.evidence.residual, "an accepted erasure names what is kept meanwhile"
