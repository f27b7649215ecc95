"""The router plans only the systems in a request's scope."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.devstack.demo import demo_systems
from pipeline.register import SystemsRegister
from pipeline.streaming.router import targets_for
from schemas import ErasureRequested, Scope, SealedIdentities

REGISTER = SystemsRegister.model_validate(demo_systems("sqlite:///x.db", "http://127.0.0.1:1"))
SEALED = SealedIdentities(alg="sealedbox-x25519", key_id="intake-x", ciphertext="c2VhbGVk")


def request(scope: Scope | None) -> ErasureRequested:
    return ErasureRequested(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f",
                            received_at=datetime(2026, 11, 26, tzinfo=UTC), identities=SEALED,
                            scope=scope)


def test_no_scope_plans_every_system() -> None:
    assert [t.id for t in targets_for(request(None), REGISTER)] == ["site-db", "brevo"]


def test_scope_by_system() -> None:
    assert [t.id for t in targets_for(request(Scope(systems=["brevo"])), REGISTER)] == ["brevo"]


def test_scope_by_data_category() -> None:
    scoped = request(Scope(data_categories=["newsletter"]))
    assert [t.id for t in targets_for(scoped, REGISTER)] == ["brevo"]
    assert targets_for(request(Scope(data_categories=["payroll"])), REGISTER) == []
