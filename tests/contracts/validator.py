"""Check one fake exchange against its processor's contract (contracts/<processor>.openapi.yaml).

openapi-core does the OpenAPI work (path and operation lookup, parameters, security, bodies,
response status, headers and bodies); this module adds what it leaves out and says each
violation in one line: which processor and operation, which field, which rule, and where the
contract took it from (`x-source`).

Rules beyond openapi-core's:
- a method and path the contract does not hold is a violation (an unknown operation);
- a query parameter the operation does not declare is a violation;
- a request that breaks the contract is tolerated only when the fake refused it the way the
  vendor refuses bad input (400 or 422; 401/403 for missing or wrong credentials): a fake that
  enforces the contract is doing its job. Anything it accepted must satisfy the contract.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from jsonschema.exceptions import best_match
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound, ServerNotFound
from openapi_core.testing import MockRequest, MockResponse

from pipeline.devstack.fake_server import Exchange

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Fakes serving part of another processor's API (Google's OAuth2 token endpoint for GA4), or the
# same API under another name (Mailjet with sub-accounts, each key pair reaching its own account).
CONTRACT_OF_FAKE = {"google-oauth2": "ga4", "mailjet-accounts": "mailjet"}
REFUSALS = frozenset({400, 422})
AUTH_REFUSALS = frozenset({401, 403})
MAX_DETAIL = 240
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Violation:
    processor: str
    operation: str  # "METHOD /template" or "METHOD /path" when unknown
    status: int
    where: str  # "request", "response", "request query parameter x", ...
    rule: str
    detail: str
    source: str

    def __str__(self) -> str:
        return (f"{self.processor}: {self.operation} -> HTTP {self.status}: {self.where}: {self.detail} "
                f"[rule: {self.rule}] (contract: contracts/{self.processor}.openapi.yaml; "
                f"source: {self.source})")


def contract_path(processor: str) -> Path:
    return CONTRACTS_DIR / f"{processor}.openapi.yaml"


def contract_name(fake_name: str) -> str:
    return CONTRACT_OF_FAKE.get(fake_name, fake_name)


@functools.cache
def load_document(processor: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(contract_path(processor).read_text(encoding="utf-8"))
    return document


def _base_path(servers: list[dict[str, Any]] | None) -> str:
    """A server URL's path (`https://{host}/v2` -> `/v2`): the fakes serve on any host."""
    if not servers:
        return "/"
    return urlsplit(str(servers[0].get("url", "/"))).path.rstrip("/") or "/"


@functools.cache
def _validator(processor: str) -> tuple[OpenAPI, str]:
    document = copy.deepcopy(load_document(processor))
    base = _base_path(document.get("servers"))
    for scheme in document.get("components", {}).get("securitySchemes", {}).values():
        # openapi-core checks no OAuth2 scheme; its access tokens travel as Bearer (RFC 6750).
        if scheme.get("type") == "oauth2":
            scheme.clear()
            scheme.update(type="http", scheme="bearer")
    document["servers"] = [{"url": base}]
    for item in document.get("paths", {}).values():
        item.pop("servers", None)
        for method in METHODS:
            if method in item:
                item[method].pop("servers", None)
                content = item[method].get("requestBody", {}).get("content", {})
                if FORM in content:  # form bodies are checked decoded (see `_form_as_json`)
                    content.setdefault("application/json", {"schema": content[FORM].get("schema", {})})
    # openapi-core reads only application/json as JSON: structured-syntax `+json` types too.
    json_types = {"application/problem+json", "application/vnd.segment.v1+json"}
    config = Config(extra_media_type_deserializers=dict.fromkeys(json_types, json.loads))
    return OpenAPI.from_dict(document, config=config), base


def find_operation(processor: str, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The contract's path template and operation for this call; literal segments win over
    parameters (`/users/search` before `/users/{user_id}`). `path` is still URL-encoded."""
    document = load_document(processor)
    _, base = _validator(processor)
    relative = path[len(base):] if base != "/" and path.startswith(base) else path
    segments = [unquote(s) for s in relative.strip("/").split("/")]
    best: tuple[int, str, dict[str, Any]] | None = None
    for template, item in document.get("paths", {}).items():
        operation = item.get(method.lower())
        if operation is None:
            continue
        parts = template.strip("/").split("/")
        if len(parts) != len(segments) or template.endswith("/") != relative.endswith("/"):
            continue
        literal = 0
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    break
            elif part != segment:
                break
            else:
                literal += 1
        else:
            if best is None or literal > best[0]:
                best = (literal, template, operation)
    return None if best is None else (best[1], best[2])


def _path_values(template: str, path: str, base: str) -> dict[str, str]:
    relative = path[len(base):] if base != "/" and path.startswith(base) else path
    pairs = zip(template.strip("/").split("/"), relative.strip("/").split("/"), strict=False)
    return {part[1:-1]: unquote(segment) for part, segment in pairs if part.startswith("{")}


def _form_as_json(raw: bytes) -> bytes:
    """A form body with bracket keys as nested JSON: openapi-core cannot read deepObject forms.
    `objects[customers][]=a` (Stripe's docs) and `objects[customers][0]=a` (its libraries) both
    make a list. Values stay strings, as the form sent them."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        names = key.replace("]", "").split("[")
        node = root
        for index, name in enumerate(names):
            name = name or str(len(node))  # `[]` appends
            if index == len(names) - 1:
                node[name] = value
            else:
                node = node.setdefault(name, {})
    return json.dumps(_listify(root)).encode()


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _source(operation: dict[str, Any] | None, document: dict[str, Any]) -> str:
    if operation is not None and operation.get("x-source"):
        return json.dumps(operation["x-source"], ensure_ascii=False)[:200]
    return str(document.get("info", {}).get("title", "?"))


def _describe(error: Exception) -> list[tuple[str, str, str]]:
    """(field, rule, detail) for each failure openapi-core reports in `error`."""
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        found = []
        for schema_error in schema_errors:
            field = ".".join(str(p) for p in schema_error.absolute_path) or "(the whole value)"
            detail = str(schema_error.message)
            if schema_error.context:  # anyOf / oneOf: what the branches miss, beyond their type
                misses = [e for e in schema_error.context if e.validator != "type"] or [
                    best_match(schema_error.context)]
                said = "; ".join(dict.fromkeys(str(e.message) for e in misses))
                detail = f"no branch matches: {said}"
            found.append((field, str(schema_error.validator), detail[:MAX_DETAIL]))
        return found
    name = getattr(error, "name", None) or getattr(cause, "name", None)
    field = f"{getattr(error, 'location', '') or ''} {name}".strip() if name else type(error).__name__
    return [(field, type(error).__name__, str(error)[:MAX_DETAIL])]


def check(exchange: Exchange) -> list[Violation]:
    """Every way this exchange breaks its processor's contract (none when it keeps it)."""
    processor = contract_name(exchange.fake)
    if not contract_path(processor).exists():
        return []
    document = load_document(processor)
    api, _ = _validator(processor)
    split = urlsplit(exchange.target)
    path = split.path
    suffix = document.get("x-optional-path-suffix")
    if suffix and path.endswith(suffix):
        path = path[: -len(suffix)]
    if document.get("x-optional-trailing-slash") and len(path) > 1:
        path = path.rstrip("/")
    found = find_operation(processor, exchange.method, path)
    label = f"{exchange.method} {found[0] if found else path}"

    def violation(where: str, rule: str, detail: str) -> Violation:
        return Violation(processor, label, exchange.status, where, rule, detail,
                         _source(found[1] if found else None, document))

    if found is None:
        return [violation("operation", "unknown-operation",
                          "no such method and path in the contract: the vendor documents no such call")]
    template, operation = found
    _, base = _validator(processor)
    query = parse_qsl(split.query, keep_blank_values=True)
    body, content_type = exchange.body, exchange.headers.get("content-type", "").split(";")[0].strip()
    if content_type == FORM:
        body, content_type = _form_as_json(body), "application/json"
    request = MockRequest("http://fake", exchange.method, path,
                          path_pattern=(base.rstrip("/") + template), args=query,  # type: ignore[arg-type]
                          view_args=_path_values(template, path, base), headers=exchange.headers,
                          data=body or None, content_type=content_type)
    declared = _query_names(document, template, operation)
    violations = _request_violations(api, request, declared, query, exchange, violation)
    response = MockResponse(exchange.response_body, exchange.status, headers=exchange.response_headers,
                            content_type=exchange.response_headers.get("content-type", "").split(";")[0])
    try:
        result = api.unmarshal_response(request, response)
        errors = list(result.errors)
    except (PathNotFound, OperationNotFound, ServerNotFound) as exc:  # pragma: no cover - found above
        errors = [exc]
    optional_body = _response(document, operation, exchange.status).get("x-body-optional", False)
    for error in errors:
        if optional_body and not exchange.response_body and type(error).__name__ == "MissingData":
            continue  # the docs leave this answer's body open: the fake may send none
        for field, rule, detail in _describe(error):
            violations.append(violation(f"response {field}", rule, detail))
    return violations


def _response(document: dict[str, Any], operation: dict[str, Any], status: int) -> dict[str, Any]:
    """The response object the contract gives this status (exact, then range, then default)."""
    responses = operation.get("responses", {})
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return _resolve(document, responses[key])
    return {}


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for key in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def _query_names(document: dict[str, Any], template: str, operation: dict[str, Any]) -> set[str]:
    declared = [*document["paths"][template].get("parameters", []), *operation.get("parameters", [])]
    return {p["name"] for p in map(lambda n: _resolve(document, n), declared) if p.get("in") == "query"}


def _request_violations(api: OpenAPI, request: MockRequest, declared: set[str],
                        query: list[tuple[str, str]], exchange: Exchange, violation: Any) -> list[Violation]:
    found: list[tuple[str, str, str, bool]] = []  # field, rule, detail, about credentials
    for name, _ in query:
        if name not in declared:
            found.append((f"query parameter {name}", "undeclared-parameter",
                          "the operation declares no such query parameter", False))
    try:
        errors = list(api.unmarshal_request(request).errors)
    except (PathNotFound, OperationNotFound, ServerNotFound) as exc:
        errors = [exc]
    for error in errors:
        about_credentials = "Security" in type(error).__name__
        for field, rule, detail in _describe(error):
            found.append((field, rule, detail, about_credentials))
    kept = []
    for field, rule, detail, about_credentials in found:
        refused = exchange.status in REFUSALS or (about_credentials and exchange.status in AUTH_REFUSALS)
        if not refused:
            kept.append(violation(f"request {field}", rule, detail))
    return kept
