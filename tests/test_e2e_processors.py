"""End to end with every processor connector configured: one request through the real broker, every
system reaches its final outcome, and the ledger shows each processor's evidence."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.registry import settings_model
from pipeline.devstack.demo import Person
from schemas import Identity
from tests.harness import RunningPipeline
from tests.processors import load_cases

pytestmark = pytest.mark.e2e
CASES = load_cases()
RUN = uuid.uuid4().hex[:8]
EMAIL = f"every.processor.{RUN}@example.test"


def system_id(case: Any) -> str:
    return case.type.replace("_", "-")


@pytest.fixture(scope="module")
def everything(kafka, postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
               ) -> Iterator[tuple[RunningPipeline, dict[str, Any], dict[str, Any]]]:
    fakes = {system_id(c): c.start_fake() for c in CASES if c.type != "brevo"}
    cases = {system_id(c): c for c in CASES if c.type != "brevo"}
    env: dict[str, str] = {}
    systems = []
    for sid, case in cases.items():
        env.update(case.secret_env)
        case.seed(fakes[sid], EMAIL)
        connector = {"type": case.type, **case.settings(fakes[sid])}
        if "poll_after_s" in settings_model(case.type).model_fields:
            connector["poll_after_s"] = 1  # the fakes' jobs end within seconds, not weeks
        systems.append({"id": sid, "kind": "processor", "location": "EU (fake)", "expected_turnaround_s": 120,
                        "data_categories": ["email_marketing"], "connector": connector})
    pipeline = RunningPipeline(tmp_path_factory.mktemp("every"), kafka.bootstrap, postgres_url_module,
                               [Person("Every Processor", EMAIL, "+33612345678")], extra_env=env,
                               extra_systems=systems).start()
    stop = threading.Event()

    def finish_jobs() -> None:  # the processors' asynchronous jobs run on their own clock
        while not stop.wait(0.5):
            for sid, case in cases.items():
                if case.asynchronous:
                    case.finish_jobs(fakes[sid])

    finisher = threading.Thread(target=finish_jobs, daemon=True)
    finisher.start()
    yield pipeline, cases, fakes
    stop.set()
    pipeline.stop()
    for fake in fakes.values():
        fake.stop()


def test_one_request_every_system_final_with_evidence(everything: Any) -> None:
    pipeline, cases, fakes = everything
    identities: dict[tuple[str, str], Identity] = {}
    for case in cases.values():
        for identity in case.subject(EMAIL).identities:
            identities[(identity.identity_type, identity.identity_value)] = identity
    rid = pipeline.intake.submit(list(identities.values()), datetime.now(UTC))
    view = pipeline.wait_final(rid, timeout_s=180)
    outcomes = {s.system: s for s in view.systems}
    assert set(outcomes) == {"site-db", "brevo", *cases}
    for sid, case in cases.items():
        outcome = outcomes[sid]
        assert outcome.status == case.final_status, (sid, outcome.status, outcome.error)
        evidence = outcome.evidence or {}
        assert evidence.get("reference") or evidence.get("http_status"), f"{sid}: no evidence"
        if case.asynchronous:
            assert evidence.get("reference"), f"{sid}: the job id is the evidence"
        assert not case.holds_data(fakes[sid], EMAIL), sid
    assert view.status in ("completed", "completed_with_holds")
