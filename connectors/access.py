"""What a credentials check found: is the system reachable, are we let in, may we erase there.

`erasure systems check` asks each connector's `check()` for an `AccessReport`, erasing nothing.
A processor that lists a credential's scopes (SendGrid's `GET /v3/scopes`, Auth0's token
`scope`) is compared with what the erasure calls need; one whose refusals name what is missing
(HubSpot's 403 MISSING_SCOPES, Stripe's restricted-key permission errors) is read that way; a
permission no read-only call can show is listed as `unverified`, never reported as fine.

Reports carry variable names (`credential_env`), never a secret's value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import AuthError, ConfigError, ConnectorError, RetryableError

Result = Literal["ok", "UNVERIFIED", "FAILED"]
MAX_NOTES = 300


class AccessReport(BaseModel):
    """One system's check. `scopes_granted` is None when the processor does not list them."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    reachable: bool
    authenticated: bool
    configured: bool = Field(default=True, description="False: the connector could not even be built")
    scopes_needed: list[str] = Field(default_factory=list)
    scopes_granted: list[str] | None = None
    missing: list[str] = Field(default_factory=list, description="Needed and refused or not granted")
    unverified: list[str] = Field(default_factory=list,
                                  description="Needed, but no read-only call can tell whether granted")
    credential_env: str = Field(default="", description="The variable(s) holding the credential")
    notes: str = ""

    @property
    def result(self) -> Result:
        if not (self.configured and self.reachable and self.authenticated) or self.missing:
            return "FAILED"
        return "UNVERIFIED" if self.unverified else "ok"

    def advice(self) -> str:
        """What the operator should do, naming the scopes and the variable; empty when nothing."""
        where = f"the credential in {self.credential_env}" if self.credential_env else "the credential"
        if not self.configured:
            return self.notes
        if not self.reachable:
            return "cannot reach the system: check its base_url and the network, then run the check again"
        if not self.authenticated:
            # A check that raised carries the variable in its message (every auth error names it).
            return (f"the system refused {where}: check or replace it" if self.credential_env
                    else f"check or replace the credential: {self.notes}")
        if self.missing:
            return f"grant {', '.join(self.missing)} to {where}"
        if self.unverified:
            needed = "; ".join(self.unverified)
            return f"confirm by hand that {where} has: {needed} (no read-only call can show it)"
        return ""


def compared(needed: Iterable[str], granted: Iterable[str], *, credential_env: str = "",
             notes: str = "") -> AccessReport:
    """A report from a granted-scope list: every needed scope it lacks is missing."""
    needed_list, granted_list = list(dict.fromkeys(needed)), sorted(set(granted))
    return AccessReport(reachable=True, authenticated=True, scopes_needed=needed_list,
                        scopes_granted=granted_list,
                        missing=[s for s in needed_list if s not in granted_list],
                        credential_env=credential_env, notes=notes[:MAX_NOTES])


def from_error(error: Exception, credential_env: str = "") -> AccessReport:
    """The report of a check that raised: the error's message, never a secret (messages hold none)."""
    if isinstance(error, AuthError):
        return AccessReport(reachable=True, authenticated=False, credential_env=credential_env,
                            notes=error.message[:MAX_NOTES])
    if isinstance(error, RetryableError):
        answered = error.http_status is not None
        return AccessReport(reachable=answered, authenticated=False, credential_env=credential_env,
                            notes=f"{error.message}; try again later"[:MAX_NOTES])
    if isinstance(error, ConnectorError):
        return AccessReport(reachable=True, authenticated=False, credential_env=credential_env,
                            notes=error.message[:MAX_NOTES])
    if isinstance(error, ConfigError):
        return unconfigured(str(error), credential_env)
    return AccessReport(reachable=False, authenticated=False, credential_env=credential_env,
                        notes=f"check failed: {type(error).__name__}")


def unconfigured(message: str, credential_env: str = "") -> AccessReport:
    """The connector could not be built (a variable unset, a setting wrong): the message says what."""
    return AccessReport(configured=False, reachable=False, authenticated=False, credential_env=credential_env,
                        notes=message.splitlines()[-1].strip()[:MAX_NOTES])


def described(result: str | AccessReport) -> AccessReport:
    """A store's check (a sentence: it reached its database and found what it needs) as a report."""
    if isinstance(result, AccessReport):
        return result
    return AccessReport(reachable=True, authenticated=True, notes=str(result)[:MAX_NOTES])
