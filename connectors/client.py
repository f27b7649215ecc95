"""The one HTTP client of processor connectors: base URL, session, auth, timeout, retries, errors.

In the spirit of dlt's REST client. A connector names a call by its route template
(`DELETE /v3/contacts/{identifier}`) and hands the path parameters separately: they
are URL-quoted into the path (an e-mail holding `/` or `+` never changes the path's
shape), and every error names the template, never the URL (it may hold an e-mail,
or a token in its query). Responses go through the one classifier,
`connectors.http.classify_response`; statuses a connector handles itself (a 404
meaning "already gone") are listed in `return_statuses` and returned as they are.

In-process retries follow the `RetryPolicy` handed in. Processor connectors keep the
default single attempt: the connector worker retries the whole `erase()` (whose
steps are idempotent together), and retrying single calls as well would multiply
the attempts.
"""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.auth import AuthBase

from connectors.base import PermanentError, RetryableError
from connectors.http import (
    DEFAULT_QUIRKS,
    Quirks,
    call_with_retries,
    classify_response,
    json_answer,
    json_object,
)
from connectors.pacing import PACERS, Pacer
from connectors.retry import RetryPolicy

SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)
ResponseCheck = Callable[[requests.Response, str], None]


class PathParameterError(ValueError):
    """A path parameter would change the route's shape. Names the parameter, never its value."""

    def __init__(self, path_template: str, name: str, problem: str) -> None:
        super().__init__(f"route {path_template}: path parameter {name!r} {problem}")
        self.name = name


@lru_cache(maxsize=1024)
def template_names(path_template: str) -> tuple[str, ...]:
    """The `{name}`s of a route template (templates are few: parsed once each)."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(path_template) if name is not None)


def environment_settings(url: str) -> dict[str, Any]:
    """What requests takes from the environment for calls to `url`'s origin: proxies (and
    no_proxy), the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), netrc credentials."""
    from requests.utils import get_netrc_auth

    with requests.Session() as probe:
        settings: dict[str, Any] = dict(probe.merge_environment_settings(url, {}, None, None, None))
    netrc_auth = get_netrc_auth(url)
    if netrc_auth is not None:
        settings["auth"] = netrc_auth
    return settings


def fill_path(path_template: str, path_params: Mapping[str, object] | None = None) -> str:
    """The template with each `{name}` replaced by its URL-quoted value (`/` and `+` included).

    Quoting keeps separators out, but `.`, `..` and an empty value survive it and turn
    `/contacts/{id}` into `/contacts/` once the URL is normalised (a list call, not a
    lookup): such values raise `PathParameterError`.
    """
    params = path_params or {}
    names = template_names(path_template)
    missing = [name for name in names if name not in params]
    if missing:
        raise ValueError(f"route {path_template} needs the path parameter {missing[0]!r}")
    for name in names:
        value = str(params[name])
        if not value.strip():
            raise PathParameterError(path_template, name, "is blank")
        if value.strip() in (".", ".."):
            raise PathParameterError(path_template, name, "is a dot segment ('.' or '..')")
    return path_template.format(**{name: quote(str(params[name]), safe="") for name in names})


class ProcessorClient:
    """One processor's HTTP API as seen by its connector.

    `secret_env` names the variable(s) holding the credential, for auth errors.
    `check_response(response, route)` runs on every answer before it is classified
    (OpenDSR verifies response signatures there). `max_wait_s` bounds an in-process
    wait; a longer announced wait is raised for the worker to re-queue. `quirks` are the
    processor's departures from the common classification (`connectors.http.Quirks`).
    Every call waits for the system's `Pacer` (`connectors.pacing`), shared by the
    system's clients in this process, and tells it what the processor's answers say.
    """

    def __init__(
        self, system: str, base_url: str, *, auth: AuthBase | None = None, timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None, secret_env: str | None = None,
        retry: RetryPolicy = SINGLE_ATTEMPT, max_wait_s: float = 30.0,
        check_response: ResponseCheck | None = None, sleep: Callable[[float], None] = time.sleep,
        quirks: Quirks = DEFAULT_QUIRKS, pacer: Pacer | None = None,
    ) -> None:
        self.system = system
        self._pacer = pacer
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.secret_env = secret_env
        self.retry = retry
        self.max_wait_s = max_wait_s
        self._check_response = check_response
        self._sleep = sleep
        self.quirks = quirks
        self.session = requests.Session()
        self.session.headers.update({"accept": "application/json", **(headers or {})})
        self.session.auth = auth
        # requests reads the environment (proxies, no_proxy, CA bundle, netrc) again at every
        # call, which cost more CPU than the call itself; it is read once per origin instead.
        self.session.trust_env = False
        self._environments: dict[tuple[str, str], dict[str, Any]] = {}
        self._environments_lock = threading.Lock()

    @property
    def pacer(self) -> Pacer:
        """The given pacer, else the system's in this process (looked up per call: cheap)."""
        return self._pacer or PACERS.for_system(self.system)

    def url(self, path_template: str, path_params: Mapping[str, object] | None = None) -> str:
        """Base URL + filled template; a template that is a whole URL is used as it is."""
        try:
            path = fill_path(path_template, path_params)
        except PathParameterError as exc:
            raise PermanentError(self.system, f"{exc}; nothing was sent") from None
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def send(
        self, method: str, path_template: str, path_params: Mapping[str, object] | None = None, *,
        route: str | None = None, **kwargs: Any,
    ) -> requests.Response:
        """One HTTP call, unclassified; transport failures become retryable errors naming the route."""
        route = route or f"{method} {path_template}"
        url = self.url(path_template, path_params)
        settings = self._environment(url)
        if "auth" in settings and (self.session.auth is not None or "auth" in kwargs):
            settings = {k: v for k, v in settings.items() if k != "auth"}
        pacer = self.pacer
        slot = pacer.acquire(self.system, self.max_wait_s)
        try:
            response = self.session.request(method, url, timeout=self.timeout_s, **{**settings, **kwargs})
        except requests.Timeout as exc:
            raise RetryableError(self.system, f"timeout after {self.timeout_s} s on {route}") from exc
        except requests.ConnectionError as exc:
            raise RetryableError(self.system, f"connection failed on {route}") from exc
        finally:
            pacer.release(slot)
        pacer.observe(response.headers)
        if self._check_response is not None:
            self._check_response(response, route)
        return response

    def _environment(self, url: str) -> dict[str, Any]:
        """The environment's settings for `url`'s origin, read at its first call."""
        origin = urlsplit(url)[:2]
        settings = self._environments.get(origin)
        if settings is None:
            with self._environments_lock:
                settings = self._environments.setdefault(origin, environment_settings(url))
        return settings

    def classify(self, response: requests.Response, route: str) -> None:
        """Raise the taxonomy's error for a failed answer (the one classifier).

        A throttle's announced wait holds the whole lane (`send` has already held it
        when the rate-limit headers said nothing remains in the window).
        """
        try:
            classify_response(response, self.system, route, self.secret_env, self.quirks)
        except RetryableError as exc:
            if exc.retry_after_s is not None:
                self.pacer.hold(exc.retry_after_s)
            raise

    def request(
        self, method: str, path_template: str, path_params: Mapping[str, object] | None = None, *,
        route: str | None = None, return_statuses: Collection[int] = (), **kwargs: Any,
    ) -> requests.Response:
        """Send and classify, retrying per the policy; `return_statuses` come back unclassified."""
        route = route or f"{method} {path_template}"

        def attempt() -> requests.Response:
            response = self.send(method, path_template, path_params, route=route, **kwargs)
            if response.status_code not in return_statuses:
                self.classify(response, route)
            return response

        return call_with_retries(attempt, max_wait_s=self.max_wait_s, sleep=self._sleep, policy=self.retry)

    def json(
        self, method: str, path_template: str, path_params: Mapping[str, object] | None = None, *,
        route: str | None = None, **kwargs: Any,
    ) -> Any:
        """The JSON answer of a successful call; one that is not JSON is a permanent error."""
        route = route or f"{method} {path_template}"
        response = self.request(method, path_template, path_params, route=route, **kwargs)
        return json_answer(response, self.system, route)

    def json_object(
        self, method: str, path_template: str, path_params: Mapping[str, object] | None = None, *,
        route: str | None = None, **kwargs: Any,
    ) -> dict[str, Any]:
        route = route or f"{method} {path_template}"
        response = self.request(method, path_template, path_params, route=route, **kwargs)
        return json_object(response, self.system, route)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ProcessorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
