"""Render the JSON Schema files from the models (the files are committed; a test compares)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.models import CONTRACTS

SCHEMA_DIR = Path(__file__).parent
SCHEMA_ID_BASE = "https://erasure-pipeline.invalid/schemas/"


def schema_for(name: str) -> dict[str, Any]:
    schema = CONTRACTS[name].model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_ID_BASE}{name}.schema.json",
        **schema,
    }


def render(name: str) -> str:
    return json.dumps(schema_for(name), indent=2, sort_keys=True) + "\n"


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


def export_all() -> list[Path]:
    written = []
    for name in CONTRACTS:
        path = schema_path(name)
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written
