"""An outcome's evidence in words, the same on the desk, the certificate and `erasure status`.

"accepted, completes by 2026-12-30; residual: anonymised contact record until 2026-12-30"
"""

from __future__ import annotations

from typing import Any

WORDED = ("assurance", "completes_by", "residual")


def _day(value: Any) -> str:
    return str(value)[:10]


def assurance_text(evidence: dict[str, Any]) -> str | None:
    assurance = evidence.get("assurance")
    if not assurance:
        return None
    completes_by = evidence.get("completes_by")
    return f"{assurance}, completes by {_day(completes_by)}" if completes_by else str(assurance)


def residual_text(evidence: dict[str, Any]) -> str | None:
    kept = [f"{item.get('what')} until {_day(item['until'])}" if item.get("until")
            else f"{item.get('what')} (no end date stated)"
            for item in evidence.get("residual") or [] if isinstance(item, dict)]
    return "residual: " + "; ".join(kept) if kept else None


def evidence_parts(evidence: dict[str, Any] | None, sep: str = ": ") -> list[str]:
    """The plain fields as `key<sep>value`, then how sure the erasure is and what the processor keeps."""
    if not evidence:
        return []
    parts = [f"{k}{sep}{v}" for k, v in evidence.items() if k not in WORDED and v is not None]
    return parts + [t for t in (assurance_text(evidence), residual_text(evidence)) if t]
