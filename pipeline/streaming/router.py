"""The router: a batch of erasure requests in, a plan and one task per system out.

Each request record is first verified (`Verifier.check`, kind `request`): unsigned, signed by
a signer the register does not list or entitle to `request`, or whose signature does not cover
its bytes, it is dead-lettered with the reason and nothing is opened or planned. A topic is not a
proof: anyone who can write it could otherwise have anybody erased by sealing their e-mail with
the (public) intake key. A request on the retention channel must be signed by the sweeps (`sweep`).

For each valid request it opens the identities sealed for intake, gets the
request's data key from the ledger's key store (the one already in force for a
request seen before), re-seals the identities under it, and plans the systems
in scope. The plan goes out on the outcomes topic BEFORE the tasks, so the
aggregator knows a request before any of its outcomes. A request whose tasks
were already published is a duplicate and is ignored. Invalid requests are
dead-lettered with their coordinates and the names of the wrong fields, never
their values.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

from nacl.public import PrivateKey
from pydantic import ValidationError

from connectors.retry import RetryPolicy
from pipeline.codec import describe_invalid, encode, now_utc
from pipeline.crypto import (
    PipelineKeys,
    SealError,
    new_data_key,
    open_intake,
    seal_with_data_key,
    subject_ref,
)
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger
from pipeline.ledger.digests import digest_rows
from pipeline.register import SystemEntry, SystemsRegister
from pipeline.signing import SWEEP, Unverified, Verifier
from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Publisher, Received
from pipeline.streaming.retrying import LEDGER_RETRY, until_done
from schemas import ErasurePlanned, ErasureRequested, ErasureTask, PlannedTarget, SubjectIdentities
from schemas.models import RETENTION_CHANNEL

log = logging.getLogger(__name__)

Accepted = dict[str, tuple[ErasureRequested, SubjectIdentities]]

CONSUMER = "router"


def targets_for(request: ErasureRequested, register: SystemsRegister) -> list[SystemEntry]:
    """Systems in scope: all, or those named, or those holding a named data category."""
    scope = request.scope
    chosen = []
    for entry in register.systems:
        if scope and scope.systems is not None and entry.id not in scope.systems:
            continue
        if scope and scope.data_categories is not None and not (
                set(entry.data_categories) & set(scope.data_categories)):
            continue
        chosen.append(entry)
    return chosen


class Router:
    def __init__(self, register: SystemsRegister, keys: PipelineKeys, ledger: Ledger, publisher: Publisher,
                 verifier: Verifier, ledger_retry: RetryPolicy = LEDGER_RETRY) -> None:
        if keys.intake_private is None or keys.subject_ref_hmac is None:
            raise ValueError("the router needs the intake private key and the subject_ref key")
        self.register = register
        self.intake_private: bytes | PrivateKey = keys.intake_private
        # Made once: a PrivateKey derives its public key (a scalar multiplication) when made. Not a
        # key: kept as bytes, and each opening says so, per request, as before.
        with contextlib.suppress(ValueError, TypeError):
            self.intake_private = PrivateKey(keys.intake_private)
        self.hmac_key = keys.subject_ref_hmac
        self.ledger = ledger
        self.publisher = publisher
        self.verifier = verifier
        self.ledger_retry = ledger_retry

    async def route(self, batch: Sequence[Received]) -> list[str]:
        """Route one batch; return the ids of the requests whose plan and tasks were published."""
        accepted = await self.accept(batch)
        if not accepted:
            return []
        now = now_utc()
        proposals = {rid: new_data_key() for rid in accepted}
        grants = await until_done(self.ledger_retry, "router: storing data keys",
                                  self.ledger.grant_data_keys, proposals, now)
        messages: list[Message] = []
        routed = []
        digests: list[dict[str, str]] = []
        for rid, (request, subject) in accepted.items():
            grant = grants.get(rid)
            if grant is None or grant.tasks_published:
                log.info("router: request %s already routed; duplicate ignored", rid)
                continue
            targets = targets_for(request, self.register)  # once per request: the plan and the digests
            messages.extend(self.plan_messages(request, subject, grant.data_key, now, targets))
            digests.extend(self.digest_rows(rid, request, subject, targets))
            routed.append(rid)
        # Before any task: a restored store can be erased again only if the digests outlive the key.
        await until_done(self.ledger_retry, "router: recording identity digests",
                         self.ledger.record_identity_digests, digests, now)
        await self.publisher.send_all(messages)
        await until_done(self.ledger_retry, "router: marking tasks published",
                         self.ledger.mark_tasks_published, routed, now)
        log.info("router: routed %d request(s)", len(routed))
        return routed

    async def accept(self, batch: Sequence[Received]) -> Accepted:
        """Each valid request (first of its id) with its opened identities; the rest dead-lettered."""
        accepted: Accepted = {}
        for record in batch:
            try:  # before anything of the record is read: the signature covers its bytes as they came
                signer_id = self.verifier.check(record.topic, record.key, record.value, record.headers,
                                                "request")
            except Unverified as exc:
                await self.publisher.dead_letter(record, str(exc), CONSUMER)
                continue
            try:
                request = ErasureRequested.model_validate_json(record.value)
            except ValidationError as exc:
                await self.publisher.dead_letter(record, describe_invalid(exc), CONSUMER)
                continue
            if request.channel == RETENTION_CHANNEL and signer_id != SWEEP:
                # A retention request skips the person's verification: only the sweeps may send one.
                await self.publisher.dead_letter(
                    record, f"{signer_id!r} may not sign a request on the {RETENTION_CHANNEL!r} channel "
                    f"(only {SWEEP!r} may)", CONSUMER)
                continue
            try:
                subject = open_intake(self.intake_private, request.identities)
            except ValidationError as exc:
                # Opened, each identity meets its type's rule (schemas.identity) or the request is
                # never planned; the reason names the field and the rule, never the value.
                await self.publisher.dead_letter(
                    record, f"sealed identities: {describe_invalid(exc)}", CONSUMER)
                continue
            except SealError as exc:
                await self.publisher.dead_letter(record, str(exc), CONSUMER)
                continue
            accepted.setdefault(request.request_id, (request, subject))
        return accepted

    def digest_rows(self, request_id: str, request: ErasureRequested, subject: SubjectIdentities,
                    targets: Sequence[SystemEntry] | None = None) -> list[dict[str, str]]:
        targets = targets_for(request, self.register) if targets is None else targets
        kept = {t.id: t.backup_retention for t in targets if t.backup_retention}
        return digest_rows(self.hmac_key, request_id, subject, kept)

    def plan_messages(self, request: ErasureRequested, subject: SubjectIdentities, data_key: bytes,
                      now: datetime, targets: Sequence[SystemEntry] | None = None) -> list[Message]:
        """The plan on the outcomes topic first, then one task per planned system."""
        sealed = seal_with_data_key(data_key, request.request_id, subject)
        ref = subject_ref(self.hmac_key, subject)
        due = due_at(request.received_at)
        targets = targets_for(request, self.register) if targets is None else targets
        key = request.request_id.encode()
        plan = ErasurePlanned(
            request_id=request.request_id, received_at=request.received_at, due_at=due,
            subject_ref=ref, identities=sealed, scope=request.scope, planned_at=now,
            channel=request.channel, verification=request.verification,
            targets=[PlannedTarget(system=t.id, expected_turnaround_s=t.expected_turnaround_s)
                     for t in targets],
        )
        messages = [Message(topics.OUTCOMES, key, encode(plan))]
        if not plan.targets:
            return messages
        # Every value was validated a moment ago, as a field of the same type in the plan:
        # validating each task again would only repeat that (tests check the bytes are the same).
        # The tasks differ only by system: one is built, the others are copies naming theirs.
        first = ErasureTask.model_construct(
            request_id=plan.request_id, system=plan.targets[0].system, attempt=1,
            received_at=plan.received_at, due_at=plan.due_at, subject_ref=plan.subject_ref,
            identities=plan.identities, scope=plan.scope)
        for target in plan.targets:
            task = first if target is plan.targets[0] else first.model_copy(update={"system": target.system})
            messages.append(Message(topics.task_topic(target.system), key, encode(task)))
        return messages
