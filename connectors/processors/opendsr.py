"""Any processor speaking OpenDSR 2.0 (mParticle, AppsFlyer, Singular, ...).

Create `POST /v2/requests` with our request id as `subject_request_id` (the idempotency key: a
repeat never makes a second request) -> 201, then `pending` with `job_ref` = that id; a later
submission (an officer's retry, a re-drive) is a new OpenDSR request with its own id and callback
URL (`opendsr_callbacks.submission_id`), so a callback says which attempt it answers; polls
`GET /v2/requests/{subject_request_id}`: pending/in_progress stay pending, completed is erased,
cancelled is a permanent error. Callbacks, when `callback_url` is set, are verified by
`connectors.processors.opendsr_callbacks`; polling stays the fallback. `encoded_request` is never kept.
With `trust_anchors_file`, the signature and certificate of every success answer (the spec signs
the 201 create, the status and the 202 cancel) are verified too; errors are unsigned in the spec
(§7.7) and are classified as usual (a 429 is retried, honouring Retry-After): none of them can
make a request `erased`.
The spec's only error is a 400 (§7.5) and it defines no answer for a repeated
`subject_request_id`: a 400 (or a 409, which some processors send) to a create is therefore
followed by a status query for that id; when the processor holds the request (a retry after a
lost 201), the connector continues with it, otherwise the 400 is a permanent error with its reason.
API auth is outside the spec: Basic (key:secret, mParticle) or a bearer token.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import BearerTokenAuth, HttpBasicAuth
from connectors.base import ConfigError, EraseResult, PermanentError, TaskContext, require_secret
from connectors.client import ProcessorClient
from connectors.http import json_object
from connectors.processors.opendsr_callbacks import (
    CallbackRejected,
    CallbackTrust,
    callback_url_for,
    submission_id,
    verify_signed,
)
from schemas import Evidence, SubjectIdentities

REQUESTS = "/requests"
REQUEST = "/requests/{subject_request_id}"
# Routes as errors name them: after the version path, which is "/v2" unless configured
CREATE = "POST /v2/requests"
POLL = "GET /v2/requests/{subject_request_id}"
DISCOVERY = "GET /discovery"
OpenDsrIdentity = Literal["email", "controller_customer_id", "android_advertising_id", "ios_advertising_id",
                          "android_id", "ios_vendor_id", "fire_advertising_id", "microsoft_advertising_id",
                          "microsoft_publisher_id", "roku_publisher_id", "roku_advertising_id"]
OurIdentity = Literal["email", "phone", "user_id", "account_id", "customer_id"]
STILL_RUNNING = ("pending", "in_progress")
# A subject_request_id no one made (a valid UUID v4): its status query proves the credentials only.
PROBE_REQUEST = "00000000-0000-4000-8000-000000000000"


def _default_identities() -> dict[OurIdentity, OpenDsrIdentity]:
    return {"email": "email"}


class OpenDsrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="Before the version: https://opendsr.mparticle.com")
    processor_domain: str = Field(description="Its X-OpenDSR-Processor-Domain, e.g. opendsr.mparticle.com")
    auth: Literal["basic", "bearer"] = "basic"
    api_key_env: str = Field(default="OPENDSR_API_KEY", description="basic: the user; bearer: the token")
    api_secret_env: str | None = Field(default="OPENDSR_API_SECRET", description="basic: the password")
    identities: dict[OurIdentity, OpenDsrIdentity] = Field(
        default_factory=_default_identities, min_length=1,
        description="Which of our identity types to send, as which OpenDSR identity_type")
    identity_format: Literal["raw", "sha256", "sha1", "md5"] = "raw"
    regulation: Literal["gdpr", "ccpa"] = "gdpr"
    callback_url: str | None = None
    version_path: str = "/v2"
    poll_after_s: float = Field(default=3600.0, gt=0)
    trust_anchors_file: str | None = Field(default=None, description="PEM CA certificates: verify responses")
    discovery_url: str | None = Field(default=None, description="Default: base_url + version_path/discovery")
    timeout_s: float = Field(default=10.0, gt=0)


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class OpenDsrConnector:
    def __init__(self, system: str, settings: OpenDsrSettings) -> None:
        self.system = system
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/") + "/" + settings.version_path.strip("/")
        key = require_secret(settings.api_key_env, system)
        auth: HttpBasicAuth | BearerTokenAuth
        if settings.auth == "basic":
            secret = require_secret(settings.api_secret_env, system) if settings.api_secret_env else ""
            auth = HttpBasicAuth(key, secret)
            secret_env = ", ".join(e for e in (settings.api_key_env, settings.api_secret_env) if e)
        else:
            auth = BearerTokenAuth(key)
            secret_env = settings.api_key_env
        self._secret_env = secret_env
        self._trust: CallbackTrust | None = None
        if settings.trust_anchors_file:
            try:
                pem = Path(settings.trust_anchors_file).read_bytes()
                self._trust = CallbackTrust.from_pem(pem, discovery_urls={
                    settings.processor_domain: settings.discovery_url or f"{self.base_url}/discovery"})
            except (OSError, ValueError) as exc:
                raise ConfigError(f"system {system!r}: trust_anchors_file {settings.trust_anchors_file} "
                                  f"is not readable PEM: {type(exc).__name__}") from None
        self._client = ProcessorClient(system, self.base_url, auth=auth, timeout_s=settings.timeout_s,
                                       secret_env=secret_env, check_response=self._verify)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        if context.job_ref:
            return self._poll(context.job_ref)
        identities = self._identities(subject)
        if not identities:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        request_id = submission_id(context.request_id, context.attempt)
        body: dict[str, Any] = {
            "regulation": self.settings.regulation,
            "subject_request_id": request_id,
            "subject_request_type": "erasure",
            "submitted_time": rfc3339(context.received_at or datetime.now(UTC)),
            "subject_identities": identities,
            "api_version": "2.0",
        }
        if self.settings.callback_url:
            body["status_callback_urls"] = [
                callback_url_for(self.settings.callback_url, context.request_id, context.attempt)]
        response = self._client.request("POST", REQUESTS, route=CREATE, json=body, return_statuses=(400, 409))
        if response.status_code in (400, 409):  # maybe a repeat of a request the processor already has
            existing = self._existing(request_id)
            if existing is not None:
                return existing
            raise PermanentError(self.system,
                                 f"HTTP {response.status_code} from {CREATE}: {_reason(response)}")
        document = json_object(response, self.system, CREATE)
        answered = document.get("subject_request_id")
        if answered is not None and str(answered).lower() != request_id:
            raise PermanentError(self.system, f"{CREATE} answered for another subject_request_id")
        return self._pending(request_id, response.status_code, document)

    def _existing(self, request_id: str) -> EraseResult | None:
        """The processor's own (signed) status of `request_id`, or None when it has no such request."""
        response = self._client.request("GET", REQUEST, {"subject_request_id": request_id}, route=POLL,
                                        return_statuses=(400, 404))
        if response.status_code in (400, 404):
            return None
        return self._status(request_id, response)

    def _poll(self, request_id: str) -> EraseResult:
        response = self._client.request("GET", REQUEST, {"subject_request_id": request_id}, route=POLL,
                                        return_statuses=(400, 404))
        if response.status_code in (400, 404):
            raise PermanentError(self.system, f"HTTP {response.status_code} from {POLL}: the processor has "
                                              f"no such request ({_reason(response)})")
        return self._status(request_id, response)

    def _status(self, request_id: str, response: requests.Response) -> EraseResult:
        document = json_object(response, self.system, POLL)
        status = document.get("request_status")
        if status in STILL_RUNNING:
            return self._pending(request_id, response.status_code, document)
        if status == "completed":  # the processor's own status says it is done
            return EraseResult(status="erased", evidence=Evidence(reference=request_id, http_status=200,
                                                                  assurance="confirmed"))
        if status == "cancelled":
            raise PermanentError(self.system, f"{POLL}: the processor cancelled the request")
        raise PermanentError(self.system, f"{POLL}: unknown request_status")

    def _pending(self, request_id: str, http_status: int, document: dict[str, Any]) -> EraseResult:
        """Accepted while it runs, by the `expected_completion_time` the processor must state."""
        expected = _rfc3339(document.get("expected_completion_time"))
        return EraseResult(status="pending", job_ref=request_id, poll_after_s=self.settings.poll_after_s,
                           evidence=Evidence(reference=request_id, http_status=http_status,
                                             assurance="accepted" if expected else None,
                                             completes_by=expected))

    def _identities(self, subject: SubjectIdentities) -> list[dict[str, str]]:
        identities = []
        for identity in subject.identities:
            kind = self.settings.identities.get(identity.identity_type)
            if kind is None:
                continue
            value = identity.identity_value.strip()
            if self.settings.identity_format != "raw":
                normalized = value.lower() if kind == "email" else value
                value = hashlib.new(self.settings.identity_format, normalized.encode()).hexdigest()
            identities.append({"identity_type": kind, "identity_value": value,
                               "identity_format": self.settings.identity_format})
        return identities

    def _verify(self, response: requests.Response, route: str) -> None:
        """With trust anchors, every success answer must be signed by the processor (§7.4, §8.3,
        §9.2); errors carry no signature in the spec and are classified as they come."""
        if self._trust is None or not 200 <= response.status_code < 300:
            return
        try:
            verify_signed(response.headers, response.content, [self.settings.processor_domain], self._trust)
        except CallbackRejected as exc:
            raise PermanentError(self.system, f"{route}: response refused: {exc.message}") from None

    def check(self) -> AccessReport:
        """Discovery says whether the processor takes erasures of our identities; a status query for
        a request no one made (400 or 404) proves the credentials, which discovery does not need."""
        response = self._client.request("GET", self.settings.discovery_url or "/discovery", route=DISCOVERY)
        discovery = json_object(response, self.system, DISCOVERY)
        self._client.request("GET", REQUEST, {"subject_request_id": PROBE_REQUEST}, route=POLL,
                             return_statuses=(400, 404))
        supported = {(str(i.get("identity_type")), str(i.get("identity_format")))
                     for i in discovery.get("supported_identities") or [] if isinstance(i, dict)}
        needed = {"erasure requests": "erasure" in (discovery.get("supported_subject_request_types") or [])}
        for kind in dict.fromkeys(self.settings.identities.values()):
            needed[f"{kind} identities ({self.settings.identity_format})"] = (
                (kind, self.settings.identity_format) in supported)
        return AccessReport(reachable=True, authenticated=True, scopes_needed=list(needed),
                            scopes_granted=[n for n, ok in needed.items() if ok],
                            missing=[n for n, ok in needed.items() if not ok],
                            credential_env=self._secret_env,
                            notes=f"discovery api_version {str(discovery.get('api_version'))[:10]}; "
                                  "credentials accepted by a status query")

    def close(self) -> None:
        self._client.close()


def _rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _reason(response: requests.Response) -> str:
    """The processor's error reason token only: its message might echo what we sent."""
    try:
        errors = response.json()["error"].get("errors") or []
        reason = str(errors[0].get("reason", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "request refused"
    return reason if reason.replace("_", "").isalnum() and len(reason) <= 60 else "request refused"
