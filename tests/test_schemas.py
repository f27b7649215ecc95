"""The JSON Schema files and the pydantic models accept and reject the same events."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from schemas import CONTRACTS
from schemas.export import render, schema_path

SEALED = {"alg": "sealedbox-x25519", "key_id": "intake-0123456789abcdef", "ciphertext": "c2VhbGVk"}
INNER = {"alg": "secretbox-xsalsa20poly1305", "key_id": "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f",
         "ciphertext": "c2VjcmV0"}
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
T0 = "2026-01-31T10:00:00+01:00"

VALID: dict[str, dict[str, Any]] = {
    "ErasureRequested": {"event_type": "erasure.requested", "request_id": RID, "received_at": T0,
                         "identities": SEALED, "scope": {"systems": ["brevo"]}, "locale": "fr-FR"},
    "ErasurePlanned": {"event_type": "erasure.planned", "request_id": RID, "received_at": T0,
                       "due_at": "2026-02-28T10:00:00+01:00", "subject_ref": "sr_abc",
                       "identities": INNER, "planned_at": T0,
                       "targets": [{"system": "brevo", "expected_turnaround_s": 60}]},
    "ErasureTask": {"event_type": "erasure.task", "request_id": RID, "system": "site-db", "attempt": 2,
                    "not_before": T0, "received_at": T0, "due_at": T0, "subject_ref": "sr_abc",
                    "identities": INNER},
    "ErasureOutcome": {"event_type": "erasure.outcome", "request_id": RID, "system": "stripe",
                       "attempt": 1, "status": "held", "occurred_at": T0,
                       "holds": [{"data_category": "invoices", "legal_basis": "legal obligation",
                                  "citation": "Code de commerce L123-22",
                                  "retain_until": "2036-01-31T00:00:00Z"}],
                       "evidence": {"reference": "cus_123", "http_status": 200, "records_affected": 1}},
    "ErasureCompleted": {"event_type": "erasure.completed", "request_id": RID, "status": "completed",
                         "systems": [{"system": "brevo", "status": "erased", "attempt": 1}],
                         "received_at": T0, "due_at": T0, "completed_at": T0, "on_time": True},
    "DeadLetter": {"event_type": "erasure.deadletter", "source_topic": "erasure.requests.v1",
                   "partition": 0, "offset": 12, "reason": "invalid JSON", "consumer": "router",
                   "dead_lettered_at": T0},
    "SubjectIdentities": {"identities": [{"identity_type": "email", "identity_value": "a@b.example"}]},
}

# (contract, mutation description, mutate function)
INVALID = [
    ("ErasureRequested", "unknown field", lambda e: e.update(extra="x")),
    ("ErasureRequested", "request id not a UUID v4", lambda e: e.update(request_id="1234")),
    ("ErasureRequested", "received_at without time zone",
     lambda e: e.update(received_at="2026-01-31T10:00:00")),
    ("ErasureRequested", "identities missing", lambda e: e.pop("identities")),
    ("ErasureRequested", "clear-text identities", lambda e: e.update(identities=[
        {"identity_type": "email", "identity_value": "a@b.example"}])),
    ("ErasureRequested", "unknown regulation", lambda e: e.update(regulation="ccpa")),
    ("ErasureTask", "attempt zero", lambda e: e.update(attempt=0)),
    ("ErasureTask", "system id with capitals", lambda e: e.update(system="Brevo")),
    ("ErasureOutcome", "unknown status", lambda e: e.update(status="done")),
    ("ErasureOutcome", "hold without citation", lambda e: e["holds"][0].pop("citation")),
    ("ErasureOutcome", "attempt as a string", lambda e: e.update(attempt="1")),
    ("ErasureCompleted", "per-system status unknown",
     lambda e: e["systems"][0].update(status="gone")),
    ("ErasureOutcome", "unknown assurance", lambda e: e["evidence"].update(assurance="probably")),
    ("ErasureOutcome", "completes_by without time zone",
     lambda e: e["evidence"].update(assurance="accepted", completes_by="2026-03-02T10:00:00")),
    ("ErasureOutcome", "residual data without what",
     lambda e: e["evidence"].update(residual=[{"until": T0}])),
    ("ErasureOutcome", "residual data with an unknown field",
     lambda e: e["evidence"].update(residual=[{"what": "shell", "kept": True}])),
    ("DeadLetter", "negative offset", lambda e: e.update(offset=-1)),
    ("SubjectIdentities", "no identity", lambda e: e.update(identities=[])),
]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path(name).read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_committed_schema_file_is_what_the_model_renders(name: str) -> None:
    assert schema_path(name).read_text() == render(name), (
        f"{schema_path(name)} is stale: run `erasure schemas export`")


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_example_accepted_by_schema_and_model(name: str) -> None:
    _validator(name).validate(VALID[name])
    CONTRACTS[name].model_validate_json(json.dumps(VALID[name]))


@pytest.mark.parametrize(("name", "case", "mutate"), INVALID, ids=[f"{n}:{c}" for n, c, _ in INVALID])
def test_invalid_example_rejected_by_schema_and_model(name: str, case: str, mutate: Any) -> None:
    event = copy.deepcopy(VALID[name])
    mutate(event)
    assert list(_validator(name).iter_errors(event)), f"schema accepted: {case}"
    with pytest.raises(ValidationError):
        CONTRACTS[name].model_validate_json(json.dumps(event))


def test_models_are_frozen() -> None:
    event = CONTRACTS["DeadLetter"].model_validate_json(json.dumps(VALID["DeadLetter"]))
    with pytest.raises(ValidationError):
        event.offset = 3  # type: ignore[attr-defined]


def test_outcome_says_accepted_with_commitment_and_residual_data() -> None:
    event = copy.deepcopy(VALID["ErasureOutcome"])
    event.update(status="erased", holds=[])
    event["evidence"] = {"http_status": 200, "assurance": "accepted",
                         "completes_by": "2026-03-02T10:00:00+01:00",
                         "residual": [{"what": "anonymised contact record",
                                       "until": "2026-03-02T10:00:00+01:00"},
                                      {"what": "deleted customer record (id, deleted flag)"}]}
    _validator("ErasureOutcome").validate(event)
    outcome = CONTRACTS["ErasureOutcome"].model_validate_json(json.dumps(event))
    evidence = outcome.evidence  # type: ignore[attr-defined]
    assert evidence.assurance == "accepted"
    assert evidence.residual[1].until is None
