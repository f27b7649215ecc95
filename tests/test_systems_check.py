"""`erasure systems check`: each system's credentials and the permissions erasing needs, erasing nothing.

Every processor connector's `check()` against its fake (a real HTTP server serving the vendor's
read-only endpoints, with switches that grant or deny scopes): full access is ok, or UNVERIFIED
where no read-only call can show a permission; a missing scope is named; bad credentials fail
naming the variable. Then the command itself, on a systems.yaml listing several fake processors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.access import AccessReport, from_error
from connectors.base import AuthError
from connectors.pacing import PACERS
from connectors.registry import build_connector, settings_model
from pipeline.devstack.demo import DEMO_PEOPLE, demo_systems, seed_brevo, seed_site_database
from pipeline.devstack.fake_brevo import FakeBrevo
from tests.fakes import auth0, hubspot, opendsr, segment, sendgrid, stripe, zendesk
from tests.processors import load_cases
from tests.processors.common import ProcessorCase

CASES: list[ProcessorCase] = load_cases()
PERSON = "systems.check.person@example.test"
# What full access gives, per processor: ok, or UNVERIFIED where a permission the erasure needs
# shows only when erasing (the report then says which, and why).
FULL_ACCESS = {"brevo": "ok", "stripe": "ok", "mailchimp": "ok", "mailjet": "ok", "zendesk": "ok",
               "auth0": "ok", "sendgrid": "ok", "opendsr": "ok", "hubspot": "UNVERIFIED",
               "intercom": "UNVERIFIED", "segment": "UNVERIFIED", "mixpanel": "UNVERIFIED",
               "ga4": "UNVERIFIED"}




def check(case: ProcessorCase, fake: Any, **overrides: Any) -> AccessReport:
    settings = settings_model(case.type).model_validate({**case.settings(fake), **overrides})
    instance = build_connector(f"{case.type}-system", case.type, settings)
    PACERS.reset()
    try:
        report: AccessReport = instance.check()  # type: ignore[attr-defined]
        return report
    finally:
        instance.close()


def test_every_processor_connector_has_a_check() -> None:
    assert {c.type for c in CASES} == set(FULL_ACCESS)


def test_full_access_is_ok_or_says_what_cannot_be_verified(case: ProcessorCase, fake: Any) -> None:
    case.seed(fake, PERSON)
    report = check(case, fake)
    assert report.result == FULL_ACCESS[case.type], report
    assert report.reachable and report.authenticated and report.missing == []
    if report.result == "UNVERIFIED":
        assert report.unverified and report.notes, "it says what it could not verify, and why"
        assert report.credential_env and report.credential_env in report.advice()
    assert case.holds_data(fake, PERSON), "the check erased nothing"


def test_bad_credentials_fail_naming_the_variable(case: ProcessorCase, fake: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-credential-value-0xdeadbeef"
    monkeypatch.setenv(case.auth_env, wrong)
    try:
        report = check(case, fake)
    except Exception as exc:  # what `erasure systems check` does with a check that raised
        report = from_error(exc)
    assert report.result == "FAILED"
    assert not report.authenticated
    assert case.auth_env in report.notes + report.advice()
    assert wrong not in report.model_dump_json() + report.advice(), "no secret value in a report"


# -- missing scopes, named ------------------------------------------------------------------
def case_of(kind: str) -> ProcessorCase:
    return next(c for c in CASES if c.type == kind)


@pytest.mark.parametrize("case", [case_of("sendgrid")], ids=["sendgrid"], indirect=True)
def test_sendgrid_compares_the_keys_scopes(case: ProcessorCase, fake: Any) -> None:
    sendgrid.grant_scopes(fake, case.secret_env[case.auth_env], ["mail.send", "marketing.read"])
    report = check(case, fake)
    assert report.result == "FAILED"
    assert report.missing == ["marketing_campaigns.read", "marketing_campaigns.delete"]
    assert report.scopes_granted == ["mail.send", "marketing.read"]
    assert report.advice() == ("grant marketing_campaigns.read, marketing_campaigns.delete to the credential "
                               "in CASE_SENDGRID_KEY")


@pytest.mark.parametrize("case", [case_of("stripe")], ids=["stripe"], indirect=True)
def test_stripe_restricted_keys(case: ProcessorCase, fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "rk_test_systems_check_key"
    monkeypatch.setenv(case.auth_env, key)
    stripe.restrict_key(fake, key, stripe.FULL_RESTRICTED - {"rak_invoice_read"})
    report = check(case, fake)
    assert report.result == "FAILED" and report.missing == ["Invoices: Read (rak_invoice_read)"]
    stripe.restrict_key(fake, key, stripe.FULL_RESTRICTED)
    report = check(case, fake)
    assert report.result == "UNVERIFIED" and report.unverified == ["Customers: Write (to delete customers)"]
    stripe.restrict_key(fake, key, stripe.FULL_RESTRICTED - {"rak_privacy_redaction_job_read"})
    report = check(case, fake, redaction=True)
    assert report.missing == ["Privacy redaction jobs: Read (rak_privacy_redaction_job_read)"]
    assert key not in report.model_dump_json()


@pytest.mark.parametrize("case", [case_of("hubspot")], ids=["hubspot"], indirect=True)
def test_hubspot_names_the_scopes_its_403_requires(case: ProcessorCase, fake: Any) -> None:
    hubspot.grant_token_scopes(fake, case.secret_env[case.auth_env], ["crm.objects.contacts.write"])
    report = check(case, fake)
    assert report.result == "FAILED" and report.missing == ["crm.objects.contacts.read"]
    assert "CASE_HUBSPOT_TOKEN" in report.advice()


@pytest.mark.parametrize("case", [case_of("auth0")], ids=["auth0"], indirect=True)
def test_auth0_reads_the_tokens_scope(case: ProcessorCase, fake: Any) -> None:
    client_id = case.secret_env["CASE_AUTH0_CLIENT_ID"]
    auth0.grant_client_scopes(fake, client_id, ["read:users"])
    report = check(case, fake)
    assert report.result == "FAILED" and report.missing == ["delete:users"]
    assert report.scopes_granted == ["read:users"]
    auth0.grant_client_scopes(fake, client_id, [])
    report = check(case, fake)
    assert report.missing == ["read:users", "delete:users"] and "authorize the application" in report.notes


@pytest.mark.parametrize("case", [case_of("zendesk")], ids=["zendesk"], indirect=True)
def test_zendesk_needs_an_admin(case: ProcessorCase, fake: Any) -> None:
    zendesk.act_as(fake, "agent")
    report = check(case, fake)
    assert report.result == "FAILED" and report.missing == ["admin role"] and "'agent'" in report.notes
    zendesk.act_as(fake, "agent", custom_role_id=360_001)
    report = check(case, fake)
    assert report.result == "UNVERIFIED" and "custom role" in report.unverified[0]


@pytest.mark.parametrize("case", [case_of("segment")], ids=["segment"], indirect=True)
def test_segment_token_without_the_api(case: ProcessorCase, fake: Any) -> None:
    segment.forbid(fake, case.secret_env[case.auth_env])
    report = check(case, fake)
    assert report.result == "FAILED" and report.missing == ["read regulations"]


@pytest.mark.parametrize("case", [case_of("opendsr")], ids=["opendsr"], indirect=True)
def test_opendsr_discovery_must_take_our_erasures(case: ProcessorCase, fake: Any) -> None:
    opendsr.support(fake, request_types=["access"], identities=[("email", "sha256")])
    report = check(case, fake)
    assert report.result == "FAILED"
    assert report.missing == ["erasure requests", "email identities (raw)"]


@pytest.mark.parametrize("case", [case_of("mixpanel")], ids=["mixpanel"], indirect=True)
def test_mixpanel_says_it_cannot_verify_and_checks_the_project_token(
        case: ProcessorCase, fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    report = check(case, fake)
    assert "cannot be verified without erasing" in report.notes
    monkeypatch.setenv("CASE_MIXPANEL_PROJECT_TOKEN", "another-project")
    with pytest.raises(AuthError) as refused:
        check(case, fake)
    assert "CASE_MIXPANEL_PROJECT_TOKEN" in from_error(refused.value).notes


# -- the command ---------------------------------------------------------------------------
def run_check(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "systems", "check", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ERASURE_HOME_DIR": str(tmp_path), **env})


def test_table_with_each_system_then_a_failure_named(tmp_path: Path) -> None:
    fake = FakeBrevo({"good-key"})
    fake.start()
    try:
        site = f"sqlite:///{tmp_path / 'site.db'}"
        seed_site_database(site)
        seed_brevo(fake.url, "good-key")
        before = fake.contact_count()
        systems = tmp_path / "systems.yaml"
        systems.write_text(yaml.safe_dump(demo_systems(site, fake.url, uploads_dir=tmp_path)))
        env = {"ERASURE_SYSTEMS_FILE": str(systems), "ERASURE_DEMO_BREVO_API_KEY": "good-key"}
        ok = run_check(tmp_path, env)
        assert ok.returncode == 0, ok.stderr
        lines = ok.stdout.splitlines()
        assert lines[0].split() == ["system", "kind", "type", "result", "missing", "notes"]
        assert {line.split()[0] for line in lines[1:]} == {"site-db", "brevo", "uploads"}
        assert all(line.split()[3] == "ok" for line in lines[1:])
        bad = run_check(tmp_path, {**env, "ERASURE_DEMO_BREVO_API_KEY": "wrong-key"})
        assert bad.returncode != 0
        brevo = next(line for line in bad.stdout.splitlines() if line.startswith("brevo"))
        assert brevo.split()[3] == "FAILED" and "ERASURE_DEMO_BREVO_API_KEY" in brevo
        advice = bad.stdout.split("what to do:")[1]
        assert advice.startswith("\n  brevo: check or replace the credential: HTTP 401")
        assert "ERASURE_DEMO_BREVO_API_KEY" in advice
        assert "wrong-key" not in bad.stdout + bad.stderr
        assert fake.contact_count() == before == sum(p.in_brevo for p in DEMO_PEOPLE), "nothing erased"
    finally:
        fake.stop()


def processor(system_id: str, connector: dict[str, Any]) -> dict[str, Any]:
    return {"id": system_id, "kind": "processor", "name": system_id, "location": "EU",
            "contract": "DPA (test)", "data_categories": ["newsletter"], "expected_turnaround_s": 60,
            "connector": connector}


@pytest.fixture
def several(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Fake SendGrid (one scope short), Stripe (a secret key), HubSpot (full scopes) and Zendesk (an
    agent's token), with their systems.yaml entries and variables."""
    started: dict[str, Any] = {}
    env: dict[str, str] = {}
    entries = []
    for kind in ("sendgrid", "stripe", "hubspot", "zendesk"):
        chosen = case_of(kind)
        started[kind] = chosen.start_fake()
        env.update(chosen.secret_env)
        entries.append(processor(f"{kind}-eu", {"type": kind, **chosen.settings(started[kind])}))
    sendgrid.grant_scopes(started["sendgrid"], case_of("sendgrid").secret_env["CASE_SENDGRID_KEY"],
                          ["marketing.read", "marketing_campaigns.read"])
    zendesk.act_as(started["zendesk"], "agent")
    systems = tmp_path / "systems.yaml"
    systems.write_text(yaml.safe_dump({"systems": entries}))
    env["ERASURE_SYSTEMS_FILE"] = str(systems)
    try:
        yield started, env
    finally:
        for server in started.values():
            server.stop()


def test_several_processors_in_one_table(tmp_path: Path, several: tuple[dict[str, Any], dict[str, str]],
                                         ) -> None:
    started, env = several
    case_of("stripe").seed(started["stripe"], PERSON)
    done = run_check(tmp_path, env)
    assert done.returncode != 0
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:5]}
    assert rows["sendgrid-eu"].split()[3:5] == ["FAILED", "marketing_campaigns.delete"]
    assert rows["stripe-eu"].split()[3] == "ok"
    assert rows["hubspot-eu"].split()[3] == "UNVERIFIED"
    assert rows["zendesk-eu"].split()[3:5] == ["FAILED", "admin"]
    advice = done.stdout.split("what to do:")[1]
    assert "  sendgrid-eu: grant marketing_campaigns.delete to the credential in CASE_SENDGRID_KEY" in advice
    assert ("  hubspot-eu: confirm by hand that the credential in CASE_HUBSPOT_TOKEN has: "
            "crm.objects.contacts.write (no read-only call can show it)") in advice
    assert "2 system(s) failed the check (sendgrid-eu, zendesk-eu)" in done.stderr
    secrets = [v for kind in started for v in case_of(kind).secret_env.values()]
    assert not any(secret in done.stdout + done.stderr for secret in secrets), "no secret value printed"
    assert case_of("stripe").holds_data(started["stripe"], PERSON), "nothing erased"


def test_json_output_and_strict(tmp_path: Path, several: tuple[dict[str, Any], dict[str, str]]) -> None:
    started, env = several
    sendgrid.grant_scopes(started["sendgrid"], case_of("sendgrid").secret_env["CASE_SENDGRID_KEY"],
                          list(sendgrid.MARKETING_SCOPES))
    zendesk.act_as(started["zendesk"], "admin")
    done = run_check(tmp_path, env, "--json")
    assert done.returncode == 0, done.stderr
    reports = {r["system"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert {s: r["result"] for s, r in reports.items()} == {
        "sendgrid-eu": "ok", "stripe-eu": "ok", "hubspot-eu": "UNVERIFIED", "zendesk-eu": "ok"}
    assert reports["hubspot-eu"]["unverified"] == ["crm.objects.contacts.write"]
    assert reports["sendgrid-eu"]["scopes_granted"] == sorted(sendgrid.MARKETING_SCOPES)
    strict = run_check(tmp_path, env, "--strict")
    assert strict.returncode != 0 and "(hubspot-eu)" in strict.stderr


def test_every_mailjet_account_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.mailjet_accounts import FakeMailjetAccounts

    fake = FakeMailjetAccounts({"main": ("main-key", "main-secret"), "sub": ("sub-key", "sub-secret")})
    fake.start()
    try:
        for name, value in {"MJ_KEY": "main-key", "MJ_SECRET": "main-secret", "MJ_SUB_KEY": "sub-key",
                            "MJ_SUB_SECRET": "revoked-secret"}.items():
            monkeypatch.setenv(name, value)
        settings = settings_model("mailjet").model_validate({
            "base_url": fake.url, "secrets": {"api_key": "MJ_KEY", "secret_key": "MJ_SECRET"},
            "accounts": [{"api_key": "MJ_SUB_KEY", "secret_key": "MJ_SUB_SECRET"}]})
        instance = build_connector("mailjet", "mailjet", settings)
        with pytest.raises(AuthError) as refused:
            instance.check()  # type: ignore[attr-defined]
        report = from_error(refused.value)
        assert report.result == "FAILED" and "MJ_SUB_KEY, MJ_SUB_SECRET" in report.advice()
        instance.close()
        monkeypatch.setenv("MJ_SUB_SECRET", "sub-secret")
        instance = build_connector("mailjet", "mailjet", settings)
        assert instance.check().result == "ok"  # type: ignore[attr-defined]
        instance.close()
    finally:
        fake.stop()
