"""The processors' contracts: one per processor, valid OpenAPI, every operation sourced; and the
validator that checks every exchange with a fake against them does fail when it must."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from connectors.processors.declarative import CallSpec, RecheckSpec, shipped_specs
from connectors.registry import connector_types
from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.devstack.fake_server import Exchange, FakeProcessor
from tests.contracts.plugin import Recorder
from tests.contracts.validator import (
    CONTRACTS_DIR,
    METHODS,
    check,
    contract_name,
    contract_path,
    find_operation,
    load_document,
)

ROOT = CONTRACTS_DIR.parent
pytest_plugins = ["pytester"]
STORES = {"sql", "redis", "files", "kafka_topic", "manual"}
CONTRACTS = sorted(p.name.removesuffix(".openapi.yaml") for p in CONTRACTS_DIR.glob("*.openapi.yaml"))
BASIC = "Basic YWdlbnRAZXhhbXBsZS50ZXN0L3Rva2VuOnNlY3JldA=="
FAKE_NAMES = {"brevo", "stripe", "mailchimp", "zendesk", "sendgrid", "segment", "mixpanel", "auth0", "ga4",
              "opendsr", "hubspot", "intercom", "mailjet"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, item[method]) for path, item in document["paths"].items()
            for method in METHODS if method in item]


def exchange(fake: str, method: str, target: str, status: int, body: Any = None,
             response_headers: dict[str, str] | None = None, request_body: Any = None,
             authorization: str = "Bearer sk_test_x") -> Exchange:
    payload = b"" if body is None else json.dumps(body).encode()
    headers = {"authorization": authorization, "content-type": "application/json"}
    return Exchange(fake, method, target, headers,
                    b"" if request_body is None else json.dumps(request_body).encode(), status,
                    {"content-type": "application/json", **(response_headers or {})}, payload)


def test_every_processor_connector_has_a_contract() -> None:
    processors = set(connector_types()) - STORES
    assert processors <= set(CONTRACTS), f"no contract for {sorted(processors - set(CONTRACTS))}"
    assert set(CONTRACTS) >= FAKE_NAMES, "every processor fake has the contract its exchanges are checked by"


def test_every_processor_fake_is_checked_against_a_contract() -> None:
    """A fake whose name maps to no contract would be served unchecked (`check` skips it)."""
    for module in sorted((ROOT / "tests" / "fakes").glob("*.py")):
        importlib.import_module(f"tests.fakes.{module.stem}")
    importlib.import_module("pipeline.devstack.fake_brevo")
    fakes = {cls.name for cls in _subclasses(FakeProcessor) if cls.__module__.startswith(("tests.fakes.",
                                                                                           "pipeline.devstack."))}
    assert fakes >= FAKE_NAMES
    unchecked = sorted(f for f in fakes if not contract_path(contract_name(f)).exists())
    assert not unchecked, f"fakes with no contract to check their exchanges: {unchecked}"


def _subclasses(cls: type[FakeProcessor]) -> list[type[FakeProcessor]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_is_valid_openapi(name: str) -> None:
    validate(load_document(name))  # raises, naming the place, when it is not


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_operation_names_its_source(name: str) -> None:
    document = load_document(name)
    assert document["info"].get("x-sources"), f"{name}: info.x-sources lists the vendor documents used"
    assert document.get("x-rate-limit"), f"{name}: x-rate-limit says how the processor signals a rate limit"
    for method, path, operation in operations(document):
        source = operation.get("x-source")
        assert source, f"{name}: {method} {path} has no x-source"
        named = source if isinstance(source, str) else " ".join(str(v) for v in source.values())
        assert any(k in named for k in ("/", "§", "http", "RFC", ".json", ".yaml", ".md")), \
            f"{name}: {method} {path}: x-source names no file, section or URL"
        assert operation.get("operationId") and operation.get("summary"), f"{name}: {method} {path}"
        assert operation.get("responses"), f"{name}: {method} {path} documents no response"


@pytest.mark.parametrize("name", CONTRACTS)
def test_job_statuses_say_what_each_means_and_whether_it_ends(name: str) -> None:
    document = load_document(name)
    for method, path, operation in operations(document):
        statuses = operation.get("x-job-statuses")
        if isinstance(statuses, dict) and "$ref" in statuses:
            statuses = document["components"]["x-job-statuses"][statuses["$ref"].rsplit("/", 1)[1]]
        if statuses is None:
            continue
        assert statuses.get("field") and statuses.get("x-source"), f"{name}: {method} {path}"
        for status, meaning in statuses["statuses"].items():
            assert meaning.get("meaning") and isinstance(meaning.get("terminal"), bool), f"{name}: {status}"


def test_asynchronous_processors_document_their_job_statuses() -> None:
    polled = {"stripe": "/v1/privacy/redaction_jobs/{job}", "zendesk": "/api/v2/job_statuses/{job_status_id}",
              "sendgrid": "/v3/marketing/contacts/imports/{id}", "segment": "/regulations/{regulateId}",
              "mixpanel": "/data-deletions/v3.0/{tracking_id}", "opendsr": "/requests/{subject_request_id}"}
    for name, path in polled.items():
        assert load_document(name)["paths"][path]["get"].get("x-job-statuses"), f"{name}: GET {path}"


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_declared_specs_and_their_contracts_agree_on_statuses(name: str) -> None:
    """Every status a spec connector maps is one its contract documents for that call, and every
    success the contract documents for the erase call is mapped (Mailjet's 204 was not)."""
    spec = shipped_specs()[name]
    recheck = spec.outcome.recheck if spec.outcome else None
    calls: list[tuple[CallSpec | RecheckSpec | None, Collection[int]]] = [
        (spec.lookup, spec.lookup.statuses if spec.lookup else ()), (spec.erase, spec.erase.statuses),
        (recheck, recheck.gone if recheck else ())]
    for call, mapped in calls:
        if call is None:
            continue
        found = find_operation(name, call.method, call.path)
        assert found is not None, f"{name}: {call.method} {call.path} is not in its contract"
        documented = set(found[1]["responses"])
        for status in mapped:
            assert str(status) in documented, f"{name}: {call.method} {call.path} maps {status}, undocumented"
    erase = find_operation(name, spec.erase.method, spec.erase.path)
    assert erase is not None
    successes = {int(s) for s in erase[1]["responses"] if s.isdigit() and s.startswith("2")}
    assert successes <= set(spec.erase.statuses), f"{name}: documented successes not mapped: " \
        f"{sorted(successes - set(spec.erase.statuses))}"


def test_a_response_that_breaks_the_contract_names_operation_field_rule_and_source() -> None:
    shell = {"id": "cus_1", "object": "customer"}
    found = check(exchange("stripe", "DELETE", "/v1/customers/cus_1", 200, shell))
    assert len(found) == 1
    text = str(found[0])
    assert "DELETE /v1/customers/{customer}" in text and "HTTP 200" in text
    assert "'deleted' is a required property" in text and "[rule: required]" in text
    assert "DeleteCustomersCustomer" in text, "the vendor operation the rule comes from"


def test_an_undocumented_status_is_a_violation() -> None:
    found = check(exchange("zendesk", "DELETE", "/api/v2/users/7.json", 302, authorization=BASIC))
    assert [v.rule for v in found] == ["ResponseNotFound"]


def test_an_unknown_operation_is_a_violation_whatever_the_answer() -> None:
    found = check(exchange("brevo", "DELETE", "/v3/contacts", 404, {"code": "not_found", "message": "x"}))
    assert [v.rule for v in found] == ["unknown-operation"]


def test_an_undeclared_query_parameter_is_a_violation() -> None:
    found = check(exchange("sendgrid", "DELETE", "/v3/marketing/contacts?ids=a&everything=true", 202,
                           {"job_id": "j1"}))
    assert [(v.where, v.rule) for v in found] == [
        ("request query parameter everything", "undeclared-parameter")]


def test_a_bad_request_is_tolerated_only_when_the_fake_refuses_it() -> None:
    bad = {"regulationType": "DELETE_EVERYTHING", "subjectType": "USER_ID", "subjectIds": ["u1"]}
    refused = exchange("segment", "POST", "/regulations", 422, {"errors": [{"type": "validation"}]},
                       request_body=bad)
    assert check(refused) == []
    accepted = exchange("segment", "POST", "/regulations", 200, {"data": {"regulateId": "r1"}},
                        request_body=bad)
    assert [(v.where, v.rule) for v in check(accepted)] == [("request regulationType", "enum")]


def test_stripe_form_arrays_are_read_both_ways() -> None:
    job = {"id": "prj_1", "object": "privacy.redaction_job", "created": 1, "livemode": False,
           "status": "validating", "validation_behavior": "error", "objects": {"customers": ["cus_1"]}}
    for form in ("objects[customers][]=cus_1", "objects[customers][0]=cus_1"):
        headers = {"authorization": "Bearer sk_test_x", "content-type": "application/x-www-form-urlencoded"}
        sent = Exchange("stripe", "POST", "/v1/privacy/redaction_jobs", headers, form.encode(), 200,
                        {"content-type": "application/json"}, json.dumps(job).encode())
        found = check(sent)
        assert [(v.where, v.rule) for v in found] == [("response objects", "anyOf")]
        assert "'charges' is a required property" in found[0].detail, "the likeliest branch's miss is named"


def test_documented_variants_are_accepted() -> None:
    """Zendesk's optional `.json`, Mixpanel's optional trailing slash, a 404 body the docs leave open."""
    assert check(exchange("zendesk", "DELETE", "/api/v2/users/7.json", 404, authorization=BASIC)) == []
    without = check(exchange("zendesk", "DELETE", "/api/v2/users/7.json", 200, {"user": {"name": "x"}},
                             authorization=""))
    assert [v.rule for v in without] == ["SecurityValidationError"], "credentials are part of the contract"
    ga4 = {"kind": "analytics#userDeletionRequest", "id": {"type": "CLIENT_ID", "userId": "1.2"},
           "webPropertyId": "UA-1-1"}
    unsigned = exchange("ga4", "POST", "/analytics/v3/userDeletion/userDeletionRequests:upsert", 200, ga4,
                        request_body=ga4, authorization="")
    assert "SecurityValidationError" in [v.rule for v in check(unsigned)], "OAuth2 bearer tokens too"
    created = {"status": "ok", "results": {"task_id": "t1"}}
    body = {"distinct_ids": ["u1"], "compliance_type": "GDPR"}
    for path in ("/api/app/data-deletions/v3.0/?token=p", "/api/app/data-deletions/v3.0?token=p"):
        assert check(exchange("mixpanel", "POST", path, 201, created, request_body=body)) == []


@pytest.mark.contract_exempt("calls an unknown route on purpose, checked by its own recorder")
def test_the_hook_reports_an_exchange_before_its_client_reads_the_answer() -> None:
    fake = FakeBrevo({"key"})
    recorder = Recorder()
    try:
        fake.start()
        answer = requests.get(f"{fake.url}/v3/nowhere", headers={"api-key": "key"}, timeout=5)
        created = requests.post(f"{fake.url}/v3/contacts", headers={"api-key": "key"},
                                json={"email": "someone@example.test"}, timeout=5)
    finally:
        recorder.stop()
        fake.stop()
    assert answer.status_code == 404 and created.status_code == 201
    report = recorder.report()
    assert recorder.exchanges == 2 and report is not None
    assert "brevo: GET /v3/nowhere -> HTTP 404: operation" in report and "unknown-operation" in report
    assert "POST /v3/contacts" not in report, "a call the contract holds, answered as it says, passes"


def test_contracts_are_not_copies_of_the_vendor_files() -> None:
    for path in CONTRACTS_DIR.glob("*.openapi.yaml"):
        assert path.stat().st_size < 64_000, f"{path.name}: trimmed to the operations used"
    assert not list(Path(CONTRACTS_DIR).glob("*.json")), "only the written contracts live here"


TEARDOWN_PROBE = '''
import pytest
import requests
from pipeline.devstack.fake_brevo import FakeBrevo

@pytest.fixture
def brevo():
    fake = FakeBrevo({"key"})
    fake.start()
    yield fake
    requests.get(f"{fake.url}/v3/nowhere", headers={"api-key": "key"}, timeout=5)  # clean-up gone wrong
    fake.stop()

def test_clean_exchanges(brevo):
    assert requests.get(f"{brevo.url}/v3/account", headers={"api-key": "key"}, timeout=5).ok
'''


def test_a_contract_broken_during_teardown_fails_the_teardown(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """In a subprocess: the probe breaks the contract on purpose, and this test's recorder is not its."""
    # The subprocess runs from pytester's own directory: the project's `tests` package must be importable.
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_probe=TEARDOWN_PROBE)
    result = pytester.runpytest_subprocess("-p", "tests.contracts.plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*during teardown: 1 contract violation*",
                                 "*brevo: GET /v3/nowhere -> HTTP 404: operation*unknown-operation*"])
