"""The published OpenAPI document: the intake router's routes (`/v1/...`) only, the body the
`ErasureRequested` contract, bearer authentication."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from schemas import ErasureRequested


def intake_openapi(app: FastAPI, intake: APIRouter) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=[r for r in intake.routes if getattr(r, "path", "").startswith("/v1/")])
    contract = ErasureRequested.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(contract.pop("$defs", {}))
    components["ErasureRequested"] = contract
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


def publish_intake_only(app: FastAPI, intake: APIRouter) -> None:
    """Publish `intake` alone: the desk's HTML routes are no API."""
    app.openapi = lambda: intake_openapi(app, intake)  # type: ignore[method-assign]
