"""Processor connectors declared as data: one optional lookup, one erase call, header auth.

A spec (`connectors/specs/<type>.yaml`) says how the processor behaves: base URL,
auth (bearer, basic or an API-key header), the secrets and parameters it needs,
the lookup that maps an identity to the processor's ids, the erase call, and what
each status means (`404: not_found`), and where its daily quota resets (`quota_zone`,
which may name a param: HubSpot's day is the account's time zone). systems.yaml then
names the spec's type and gives the environment variables holding the secrets. Everything is validated
strictly; errors name the file and the key. Anything needing branching, job
polling or token refresh is a small class instead (see the registry).
"""

from __future__ import annotations

import json
import string
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.access import AccessReport, compared
from connectors.auth import ApiKeyHeaderAuth, BearerTokenAuth, HttpBasicAuth
from connectors.base import (
    ConfigError,
    EraseResult,
    PermanentError,
    TaskContext,
    load_yaml_model,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import Quirks, json_answer
from connectors.processors.declarative_runs import RECHECK_PREFIX, Runs
from connectors.processors.declarative_runs import extract as extract  # its old home: re-exported
from schemas import Evidence, ResidualData, SubjectIdentities
from schemas.identity import InvalidIdentityError, check_identity

SPEC_DIR = Path(__file__).parent / "specs"
# follow_canonical: the object was merged into another, named by `Link: <...>; rel="canonical"`.
Outcome = Literal["erased", "not_found", "none", "follow_canonical"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(Strict):
    scheme: Literal["bearer", "basic", "header"]
    secret: str | None = Field(default=None, description="bearer/header: the secret's name")
    header: str | None = Field(default=None, description="header: the header's name, e.g. api-key")
    username_secret: str | None = None
    password_secret: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuthSpec:
        if self.scheme in ("bearer", "header") and not self.secret:
            raise ValueError(f"auth scheme {self.scheme!r} needs 'secret'")
        if self.scheme == "header" and not self.header:
            raise ValueError("auth scheme 'header' needs 'header'")
        if self.scheme == "basic" and not (self.username_secret or self.password_secret):
            raise ValueError("auth scheme 'basic' needs 'username_secret' and/or 'password_secret'")
        return self


class CallSpec(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(min_length=1)
    query: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    statuses: dict[int, Outcome] = Field(default_factory=dict)


class LookupSpec(CallSpec):
    ids: str = Field(min_length=1, description="Where the ids are in the JSON answer: data[*].id")
    settle: timedelta | None = Field(default=None, description="The lookup may miss what was created this "
                                     "recently: a miss for a newer request is looked up again then")


class EraseSpec(CallSpec):
    reference: str | None = Field(default=None, description="Answer field kept as evidence")


class CheckSpec(CallSpec):
    """The read-only call `erasure systems check` makes, and what its answers say of permissions."""

    needs: list[str] = Field(default_factory=list, description="Permissions the erasure calls need, "
                                                               "in the processor's names")
    proves: list[str] = Field(default_factory=list, description="Of those, what a 2xx answer proves granted")
    granted: str | None = Field(default=None, description="Where a 2xx answer lists the granted permissions")
    refused: str | None = Field(default=None, description="Where a 403 answer names the missing permissions")
    note: str = Field(default="", max_length=200)


class ResidualSpec(Strict):
    what: str = Field(min_length=1, max_length=200)
    kept_for: timedelta | None = Field(default=None, alias="for",
                                       description="ISO 8601 duration (P30D); absent: no stated end")


class RecheckSpec(Strict):
    """How to see that an accepted erasure was carried out: a call per id, `gone` statuses."""

    method: Literal["GET"] = "GET"
    path: str = Field(min_length=1, description="with {id}")
    gone: list[int] = Field(default_factory=lambda: [404])


class OutcomeSpec(Strict):
    """How sure an `erased` answer is: `accepted` needs the processor's own delay."""

    assurance: Literal["confirmed", "accepted"]
    completes_within: timedelta | None = Field(default=None, description="ISO 8601 duration, e.g. P30D")
    residual: list[ResidualSpec] = Field(default_factory=list)
    recheck: RecheckSpec | None = Field(default=None, description="With accepted: how to confirm it later "
                                                                  "(systems.yaml: recheck_accepted: true)")

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeSpec:
        if (self.assurance == "accepted") != (self.completes_within is not None):
            raise ValueError("'completes_within' goes with assurance 'accepted', and only with it")
        spans = [self.completes_within, *(r.kept_for for r in self.residual)]
        if any(span is not None and span <= timedelta(0) for span in spans):
            raise ValueError("durations must be positive")
        return self

    def evidence(self, now: datetime) -> dict[str, Any]:
        return {"assurance": self.assurance,
                "completes_by": now + self.completes_within if self.completes_within else None,
                "residual": [ResidualData(what=r.what, until=now + r.kept_for if r.kept_for else None)
                             for r in self.residual]}


class ProcessorSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    base_url: str
    auth: AuthSpec
    secrets: list[str] = Field(default_factory=list)
    params: list[str] = Field(default_factory=list)
    optional_params: dict[str, str] = Field(default_factory=dict,
                                            description="params systems.yaml may leave out -> default")
    quota_zone: str = Field(default="UTC", description="IANA zone where the daily quota resets; may "
                                                       "name a param: '{account_time_zone}'")
    headers: dict[str, str] = Field(default_factory=dict)
    identity: Literal["email", "phone", "user_id", "account_id", "customer_id"]
    lookup: LookupSpec | None = None
    erase: EraseSpec
    check: CheckSpec | None = None
    outcome: OutcomeSpec | None = Field(default=None, description="Applied to erased results only")
    sub_accounts: bool = Field(default=False, description="Each (sub-)account has its own data and keys: "
                                                          "systems.yaml may list more `accounts`")

    @model_validator(mode="after")
    def _secrets_declared(self) -> ProcessorSpec:
        used = [s for s in (self.auth.secret, self.auth.username_secret, self.auth.password_secret) if s]
        missing = sorted(s for s in used if s not in self.secrets)
        if missing:
            raise ValueError(f"auth uses secret {missing[0]!r}, which 'secrets' does not declare")
        names = {n for _, n, _, _ in string.Formatter().parse(self.quota_zone) if n is not None}
        undeclared = sorted(names - set(self.params) - set(self.optional_params))
        if undeclared:
            raise ValueError(f"quota_zone uses param {undeclared[0]!r}, which no 'params' declares")
        return self

    def param_values(self, given: dict[str, str]) -> dict[str, str]:
        return {**self.optional_params, **given}


class DeclarativeSettings(Strict):
    """What systems.yaml gives a declared connector."""

    base_url: str | None = None
    secrets: dict[str, str] = Field(default_factory=dict, description="secret name -> environment variable")
    params: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    accounts: list[dict[str, str]] = Field(
        default_factory=list, description="More accounts (sub-accounts), each: secret name -> variable")
    recheck_accepted: bool = Field(default=False, description="Stay pending until the processor's date "
                                   "(or shortly before the request's deadline) and check, when the spec can")


def load_spec(path: Path) -> ProcessorSpec:
    spec = load_yaml_model(path, ProcessorSpec)
    if spec.name != path.stem:
        raise ConfigError(f"{path}: key name: {spec.name!r} must match the file name {path.stem!r}")
    return spec


@cache
def shipped_specs() -> dict[str, ProcessorSpec]:
    return {path.stem: load_spec(path) for path in sorted(SPEC_DIR.glob("*.yaml"))}


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _auth(spec: AuthSpec, secrets: dict[str, str]) -> requests.auth.AuthBase:
    if spec.scheme == "bearer":
        return BearerTokenAuth(secrets[spec.secret or ""])
    if spec.scheme == "header":
        return ApiKeyHeaderAuth(spec.header or "", secrets[spec.secret or ""])
    return HttpBasicAuth(secrets.get(spec.username_secret or "", ""),
                         secrets.get(spec.password_secret or "", ""))


class DeclarativeConnector:
    def __init__(self, system: str, spec: ProcessorSpec, settings: DeclarativeSettings) -> None:
        self.system = system
        self.spec = spec
        self.settings = settings
        params = spec.param_values(settings.params)
        base_url = settings.base_url or spec.base_url.format(**params)
        quirks = Quirks(quota_zone=spec.quota_zone.format(**params))
        self._secret_env = settings.secrets
        self._clients: list[ProcessorClient] = []
        for secret_env in (settings.secrets, *settings.accounts):  # the main account, then sub-accounts
            secrets = {name: require_secret(env, system) for name, env in secret_env.items()}
            self._clients.append(ProcessorClient(
                system, base_url, auth=_auth(spec.auth, secrets), headers=spec.headers,
                timeout_s=settings.timeout_s, secret_env=", ".join(secret_env.values()), quirks=quirks))
        self._client = self._clients[0]
        self.base_url = self._client.base_url
        self._runs = Runs(self)

    @property
    def credential_env(self) -> str:
        return ", ".join(self._secret_env.values())

    def call(self, call: CallSpec, values: dict[str, str], client: ProcessorClient | None = None,
             ) -> requests.Response:
        body = _fill(call.json_body, values) if call.json_body is not None else None
        return (client or self._client).request(
            call.method, call.path, values, return_statuses=call.statuses,
            params=_fill(call.query, values) or None,
            data=json.dumps(body) if body is not None else None,
            headers={"content-type": "application/json"} if body is not None else None)

    @property
    def clients(self) -> list[ProcessorClient]:
        return self._clients

    def answer(self, response: requests.Response, call: CallSpec) -> Any:
        return json_answer(response, self.system, f"{call.method} {call.path}") if response.content else None

    def _identities(self, subject: SubjectIdentities) -> list[str]:
        """The spec's identities, each checked again before any call: `.` as an e-mail made
        `GET /contact/{identity}` a list call (dot segment removed) and erased every contact."""
        try:
            return [check_identity(self.spec.identity, i.identity_value) for i in subject.identities
                    if i.identity_type == self.spec.identity]
        except InvalidIdentityError as exc:
            raise PermanentError(self.system, f"{exc}; nothing was sent") from None

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        if context.job_ref and context.job_ref.startswith(RECHECK_PREFIX):
            return self._runs.recheck(context.job_ref)
        identities = self._identities(subject)
        if not identities:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        return self._runs.erase(identities, context)

    def check(self) -> AccessReport:
        """The spec's check call on every account; a 403 naming permissions (`refused`) is missing ones."""
        check = self.spec.check
        if check is None:
            return AccessReport(reachable=True, authenticated=True,
                                unverified=["access to the system (the spec declares no check call)"],
                                credential_env=self.credential_env, notes="the spec declares no check call")
        values = self.spec.param_values(self.settings.params)
        route = f"{check.method} {check.path}"
        granted: set[str] = set()
        missing: list[str] = []
        for client in self._clients:  # the main account, then each sub-account
            response = client.request(check.method, check.path, values,
                                      params=_fill(check.query, values) or None,
                                      return_statuses=(403,) if check.refused else ())
            if response.status_code == 403:
                named = extract(_json_or_none(response), check.refused or "")
                if not named:
                    client.classify(response, route)  # a 403 naming nothing: the credential refused
                missing += [str(n) for n in named if str(n) not in missing]
            elif check.granted:
                granted.update(str(g) for g in extract(self.answer(response, check), check.granted))
        notes = f"{route} answered" + (f"; {check.note}" if check.note else "")
        if check.granted and not missing:
            return compared(check.needs, granted, credential_env=self.credential_env, notes=notes)
        unverified = [n for n in check.needs if n not in check.proves and n not in missing]
        return AccessReport(reachable=True, authenticated=True, scopes_needed=list(check.needs),
                            scopes_granted=[p for p in check.proves if p not in missing] or None,
                            missing=missing, unverified=[] if missing else unverified,
                            credential_env=self.credential_env, notes=notes[:300])

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def settings_for(spec: ProcessorSpec, raw: dict[str, Any]) -> DeclarativeSettings:
    """Validate systems.yaml's settings against what the spec declares."""
    settings = DeclarativeSettings.model_validate(raw)
    unknown = sorted(set(settings.secrets) - set(spec.secrets))
    if unknown:
        raise ValueError(f"secrets.{unknown[0]}: {spec.name} has no secret {unknown[0]!r} "
                         f"(it has: {', '.join(spec.secrets) or 'none'})")
    missing = sorted(set(spec.secrets) - set(settings.secrets))
    if missing:
        raise ValueError(f"secrets.{missing[0]}: name the environment variable holding {spec.name}'s "
                         f"{missing[0]!r}")
    if settings.accounts and not spec.sub_accounts:
        raise ValueError(f"accounts: {spec.name} has no sub-accounts to list")
    for index, account in enumerate(settings.accounts):
        if set(account) != set(spec.secrets):
            raise ValueError(f"accounts[{index}]: name the variables of {spec.name}'s "
                             f"{', '.join(spec.secrets)} for that account")
    if settings.recheck_accepted and not (spec.outcome and spec.outcome.recheck):
        raise ValueError(f"recheck_accepted: {spec.name} declares no way to check an accepted erasure")
    takes = [*spec.params, *spec.optional_params]
    for name in sorted((set(settings.params) - set(takes)) | (set(spec.params) - set(settings.params))):
        raise ValueError(f"params.{name}: {spec.name} takes params {', '.join(takes) or 'none'}")
    zone = spec.quota_zone.format(**spec.param_values(settings.params))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        names = [n for _, n, _, _ in string.Formatter().parse(spec.quota_zone) if n is not None]
        where = f"params.{names[0]}" if names else "quota_zone"
        raise ValueError(f"{where}: {zone!r} is not a time zone (an IANA name like Europe/Berlin or "
                         "US/Eastern), needed for when the daily quota resets") from None
    return settings
