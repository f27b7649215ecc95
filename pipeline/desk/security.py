"""The desk's hardening settings in one frozen object (`create_app(security=...)`), built from the
`Settings` by `from_settings`; the defaults are the production ones (Secure cookie included)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from pipeline.settings import Settings


@dataclass(frozen=True)
class DeskSecurity:
    cookie_secure: bool = True
    session_idle_s: float = 30 * 60
    session_max_s: float = 12 * 3600
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_lockout_s: float = 30.0
    login_lockout_cap_s: float = 3600.0
    form_max_body_bytes: int = 16 * 1024
    intake_max_body_bytes: int = 64 * 1024
    opendsr_callback_max_body_bytes: int = 256 * 1024
    intake_max_clock_skew_s: float = 300.0
    intake_max_age_s: float = 90 * 86400

    @classmethod
    def from_settings(cls, settings: Settings) -> DeskSecurity:
        """Each field from the setting of the same name, `desk_`-prefixed for the desk's own."""
        values = {}
        for field in fields(cls):
            name = field.name if hasattr(settings, field.name) else f"desk_{field.name}"
            values[field.name] = getattr(settings, name)
        return cls(**values)
