"""How a declared connector runs an erasure: every account, merged objects, late lookups, re-checks.

- Accounts: the main account's secrets, then each of systems.yaml's `accounts` (sub-accounts
  hold their own data: Mailjet's deletions must run on every one).
- `follow_canonical`: an erase answer saying the object was merged (Intercom's 410
  `contact_merged`) names the surviving object in `Link: <…>; rel="canonical"`; the erase call
  is repeated on it (a link to another route, or none, is a permanent error saying so).
- `lookup.settle`: a lookup that misses recent objects (Intercom's search, "a few minutes")
  says nothing yet for a request received less than `settle` ago: the result is `pending`
  until then, and the lookup runs once more (`declarative-settled`) before `not_found`.
- Re-checks (`outcome.recheck`, opted in by `recheck_accepted`): an accepted erasure stays
  `pending`, with its accepted evidence, until the processor's date, or a day before the
  request's one-month deadline when that comes first; then each id is asked for: all `gone`
  is `erased` *confirmed*; otherwise `erased` stays *accepted*, saying how many are still there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.base import EraseResult, PermanentError, TaskContext
from connectors.client import ProcessorClient
from schemas import Evidence, ResidualData

if TYPE_CHECKING:
    from connectors.processors.declarative import DeclarativeConnector

RECHECK_PREFIX = "declarative-recheck:"
SETTLED = "declarative-settled"
# The legal month is at least 28 days: a re-check a day before keeps the request on time.
BEFORE_DEADLINE = timedelta(days=27)
MIN_WAIT = timedelta(minutes=1)
MAX_FOLLOWS = 3
JOB_REF_MAX_CHARS = 200
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?canonical"?')


def extract(document: Any, path: str) -> list[Any]:
    """A small JSON path: `data[*].id`, `[*].user_id`, `Data[*].ID`, `results.task_id`."""
    values = [document]
    for part in path.split("."):
        name, each = (part[:-3], True) if part.endswith("[*]") else (part, False)
        step = []
        for value in values:
            if name:
                value = value.get(name) if isinstance(value, dict) else None
            if value is None:
                continue
            if each:
                step.extend(value if isinstance(value, list) else [])
            else:
                step.append(value)
        values = step
    return [v for v in values if v is not None and v != ""]


@dataclass
class Tally:
    erased: int = 0
    last_status: int | None = None
    references: list[str] = field(default_factory=list)
    ids: list[tuple[int, str]] = field(default_factory=list)  # (account index, id) erased


class Runs:
    def __init__(self, connector: DeclarativeConnector) -> None:
        self.c = connector
        self.system = connector.system

    # -- erase -------------------------------------------------------------------------
    def erase(self, identities: list[str], context: TaskContext) -> EraseResult:
        tally = Tally()
        for index, client in enumerate(self.c.clients):
            for identity in identities:
                self._erase_identity(index, client, identity, tally)
        now = datetime.now(UTC)
        if not tally.erased:
            return self._miss(context, now, tally)
        outcome = self.c.spec.outcome
        sureness = outcome.evidence(now) if outcome else {}
        evidence = Evidence(http_status=tally.last_status, records_affected=tally.erased,
                            reference=", ".join(tally.references)[:200] or None, **sureness)
        if (self.c.settings.recheck_accepted and outcome and outcome.recheck
                and evidence.assurance == "accepted"):
            return self._recheck_later(evidence, tally.ids, context, now)
        return EraseResult(status="erased", evidence=evidence)

    def _erase_identity(self, index: int, client: ProcessorClient, identity: str, tally: Tally) -> None:
        spec = self.c.spec
        values = {"identity": identity, **spec.param_values(self.c.settings.params)}
        ids = [identity]
        if spec.lookup is not None:
            response = self.c.call(spec.lookup, values, client)
            found = spec.lookup.statuses.get(response.status_code)
            ids = [] if found in ("none", "not_found") else [
                str(i) for i in extract(self.c.answer(response, spec.lookup), spec.lookup.ids)]
        for item in ids:
            for _ in range(MAX_FOLLOWS + 1):
                response = self.c.call(spec.erase, {**values, "id": item}, client)
                tally.last_status = response.status_code
                outcome = spec.erase.statuses.get(response.status_code, "erased")
                if outcome != "follow_canonical":
                    break
                item = self._canonical_id(response.headers.get("link", ""))
            else:
                raise PermanentError(self.system, f"more than {MAX_FOLLOWS} merged objects in a row from "
                                                  f"{spec.erase.method} {spec.erase.path}")
            if outcome != "erased":
                continue
            tally.erased += 1
            tally.ids.append((index, item))
            if spec.erase.reference:
                answer = self.c.answer(response, spec.erase)
                tally.references.extend(str(r) for r in extract(answer, spec.erase.reference))
            elif spec.lookup is not None:
                tally.references.append(item)

    def _canonical_id(self, link: str) -> str:
        """The id in `Link: </contacts/{id}>; rel="canonical"`, on the erase call's own route only."""
        route = self.c.spec.erase.path
        pattern = re.escape(route).replace(re.escape("{id}"), "([^/?#]+)")
        match = _LINK.search(link)
        target = re.search(pattern + r"$", match.group(1).split("?")[0]) if match else None
        if target is None:
            raise PermanentError(self.system, f"the object was merged into another and the answer of "
                                              f"{self.c.spec.erase.method} {route} names no canonical one "
                                              "on that route: find it by hand")
        return target.group(1)

    def _miss(self, context: TaskContext, now: datetime, tally: Tally) -> EraseResult:
        lookup = self.c.spec.lookup
        settle_at = context.received_at + lookup.settle if (
            lookup and lookup.settle and context.received_at and context.job_ref != SETTLED) else None
        if settle_at is not None and now < settle_at:
            return EraseResult(status="pending", job_ref=SETTLED,
                               poll_after_s=max((settle_at - now).total_seconds(), 1.0),
                               evidence=Evidence(records_affected=0, reference=(
                                   "lookup misses objects created minutes ago: looked up again at "
                                   f"{settle_at:%Y-%m-%d %H:%M} UTC")))
        return EraseResult(status="not_found", evidence=Evidence(http_status=tally.last_status,
                                                                 records_affected=0))

    # -- re-check accepted erasures ------------------------------------------------------
    def _recheck_later(self, evidence: Evidence, ids: list[tuple[int, str]], context: TaskContext,
                       now: datetime) -> EraseResult:
        completes_by = evidence.completes_by or now
        when = min(completes_by, context.received_at + BEFORE_DEADLINE) if context.received_at \
            else completes_by
        ref = f"{RECHECK_PREFIX}{int(completes_by.timestamp())}:" + ",".join(f"{i}.{x}" for i, x in ids)
        if when - now < MIN_WAIT or len(ref) > JOB_REF_MAX_CHARS:
            return EraseResult(status="erased", evidence=evidence)  # no time, or too many ids, to check
        return EraseResult(status="pending", job_ref=ref, poll_after_s=(when - now).total_seconds(),
                           evidence=evidence)

    def recheck(self, ref: str) -> EraseResult:
        outcome = self.c.spec.outcome
        if outcome is None or outcome.recheck is None:
            raise PermanentError(self.system, "a re-check job_ref for a spec that declares no re-check")
        try:
            epoch, _, listed = ref.removeprefix(RECHECK_PREFIX).partition(":")
            completes_by = datetime.fromtimestamp(int(epoch), UTC)
            ids = [(int(a), x) for a, _, x in (item.partition(".") for item in listed.split(",") if item)]
        except ValueError:
            raise PermanentError(self.system, "unreadable re-check job_ref") from None
        call, left, status = outcome.recheck, 0, None
        for index, item in ids:
            response = self.c.clients[index].request(call.method, call.path, {"id": item},
                                                     return_statuses=call.gone)
            status = response.status_code
            left += status not in call.gone
        if not left:
            return EraseResult(status="erased", evidence=Evidence(
                http_status=status, records_affected=len(ids), assurance="confirmed",
                reference=f"re-check: all {len(ids)} record(s) gone at the processor"))
        return EraseResult(status="erased", evidence=Evidence(
            http_status=status, records_affected=len(ids), assurance="accepted", completes_by=completes_by,
            reference=f"re-check: {left} of {len(ids)} record(s) still at the processor",
            residual=[ResidualData(what=r.what, until=completes_by if r.kept_for else None)
                      for r in outcome.residual]))
