"""Google Analytics User Deletion API v3: upsert a userDeletionRequest per identifier.

`POST /analytics/v3/userDeletion/userDeletionRequests:upsert` with
`{"kind": "analytics#userDeletionRequest", "id": {"type", "userId"}, "propertyId"}`; 200 echoes
the resource with `deletionRequestTime`, kept as evidence. An upsert cannot tell an unknown
user, and re-sending is safe. The discovery document's `id.type` is USER_ID, CLIENT_ID or
APP_INSTANCE_ID, all three valid with a GA4 `propertyId`: `identities` maps the request's
identity types to them (default: `user_id` as USER_ID), one upsert per identifier.

Auth: an access token minted from a service account (scope `analytics.user.deletion`) by
`connectors.auth.GoogleServiceAccountAuth`, refreshed before its hour ends. Quota answers
(403 usageLimits, 429) are classified by `connectors.http`; 403 insufficientPermissions is auth.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import GoogleServiceAccountAuth
from connectors.base import EraseResult, TaskContext, identities_of
from connectors.client import ProcessorClient
from schemas import Evidence, ResidualData, SubjectIdentities
from schemas.identity import IdentityType

UPSERT = "/analytics/v3/userDeletion/userDeletionRequests:upsert"
SCOPE = "https://www.googleapis.com/auth/analytics.user.deletion"
Ga4IdType = Literal["USER_ID", "CLIENT_ID", "APP_INSTANCE_ID"]
ON_SERVERS = "the person's analytics data on Google's servers until Google's deletion runs (no date stated)"
AFTER = "data sent after deletionRequestTime by the same identifier (not covered by the request)"


def _user_id_only() -> dict[IdentityType, Ga4IdType]:
    return {"user_id": "USER_ID"}


class Ga4Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="https://www.googleapis.com", pattern=r"^https?://")
    property_id: str = Field(min_length=1, description="the GA4 property, digits only")
    key_file_env: str = Field(default="GA4_SERVICE_ACCOUNT_KEY_FILE",
                              description="variable naming the service-account JSON key file")
    token_uri: str | None = Field(default=None, pattern=r"^https?://",
                                  description="Default: the key file's token_uri (Google's)")
    identities: dict[IdentityType, Ga4IdType] = Field(
        default_factory=_user_id_only, min_length=1,
        description="request identity type -> GA4 id.type (USER_ID, CLIENT_ID, APP_INSTANCE_ID)")
    timeout_s: float = Field(default=10.0, gt=0)


class Ga4Connector:
    def __init__(self, system: str, settings: Ga4Settings) -> None:
        self.system = system
        self.settings = settings
        self._auth = GoogleServiceAccountAuth(system, settings.key_file_env, [SCOPE],
                                              token_uri=settings.token_uri, timeout_s=settings.timeout_s)
        self._client = ProcessorClient(system, settings.base_url.rstrip("/"), auth=self._auth,
                                       timeout_s=settings.timeout_s, secret_env=settings.key_file_env)

    def _targets(self, subject: SubjectIdentities) -> list[tuple[Ga4IdType, str]]:
        found: dict[tuple[Ga4IdType, str], None] = {}
        for identity_type, ga4_type in self.settings.identities.items():
            for value in identities_of(subject, identity_type):
                if value.strip():
                    found[(ga4_type, value.strip())] = None
        return list(found)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        targets = self._targets(subject)
        if not targets:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        times: list[str] = []
        for id_type, user_id in targets:
            document = self._client.json_object("POST", UPSERT, json={
                "kind": "analytics#userDeletionRequest", "id": {"type": id_type, "userId": user_id},
                "propertyId": self.settings.property_id})
            times.append(str(document.get("deletionRequestTime", "")))
        # An upsert with no job and no status: Google commits to delete, by no date it states.
        return EraseResult(status="erased", evidence=Evidence(
            http_status=200, records_affected=len(targets), reference=", ".join(times)[:200] or None,
            assurance="accepted", residual=[ResidualData(what=ON_SERVERS), ResidualData(what=AFTER)]))

    def check(self) -> AccessReport:
        """A token minted for `analytics.user.deletion` (Google refuses a grant it will not give). The
        User Deletion API has no read call: access to the property shows on the first upsert."""
        self._auth.token()
        right = f"edit GA4 property {self.settings.property_id} (the service account added as Editor)"
        return AccessReport(reachable=True, authenticated=True, scopes_needed=[SCOPE, right],
                            scopes_granted=[SCOPE], unverified=[right],
                            credential_env=self.settings.key_file_env,
                            notes="token granted for analytics.user.deletion; the User Deletion API has no "
                                  "read-only call to show access to the property")

    def close(self) -> None:
        self._client.close()
        self._auth.close()
