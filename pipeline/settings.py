"""The one settings object, read from `ERASURE_*` environment variables at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.kafka_security import Mechanism, Protocol, check_settings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERASURE_", extra="ignore", frozen=True)

    home_dir: Path = Field(
        default=Path(".erasure"),
        description="State directory: intake keys, SQLite ledger, embedded broker address",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ERASURE_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ERASURE_DATABASE_URL", "DATABASE_URL")
    )
    systems_file: Path | None = Field(
        default=None, description="systems.yaml; `erasure up` writes a demo one when unset"
    )
    policy_file: Path | None = Field(
        default=None, description="policy.yaml; the French defaults shipped with the package when unset"
    )
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    intake_public_key: str | None = Field(default=None, description="base64 X25519 public key")
    intake_private_key: str | None = Field(default=None, description="base64 X25519 private key")
    subject_ref_key: str | None = Field(default=None, description="base64 HMAC key for subject_ref")
    group_session_timeout_s: float = Field(default=6.0, gt=0)
    # A third of the session timeout, Kafka's usual ratio: a member misses two beats before it is dropped.
    group_heartbeat_interval_s: float = Field(default=2.0, gt=0)
    connector_threads: int = Field(default=8, ge=1)
    connector_max_in_flight: int = Field(default=64, ge=1)
    retry_in_process_attempts: int = Field(default=3, ge=1)
    retry_in_process_max_wait_s: float = Field(default=5.0, ge=0)
    retry_max_attempts: int = Field(default=8, ge=1, description="Attempts before `failed`")
    retry_backoff_cap_s: float = Field(default=300.0, gt=0, description="Cap of our own backoff")
    retry_announced_wait_cap_s: float = Field(
        default=26 * 3600, gt=0, description="Cap of a wait the processor announced (daily quotas)")
    redrive_check_interval_s: float = Field(default=5.0, gt=0)
    default_turnaround_s: float = Field(default=60.0, gt=0)
    batch_max: int = Field(default=500, ge=1)
    batch_within_s: float = Field(default=0.05, gt=0)
    data_key_grace_s: float = Field(
        default=30 * 86400, ge=0,
        description="After a request completes without holds, its data key is destroyed this much later",
    )
    requests_retention_s: float = Field(
        default=7 * 86400, gt=0, description="retention.ms of the requests topic (sealed boxes expire)"
    )
    webhook_url: str | None = Field(default=None, description="POST notifications here, signed")
    webhook_secret: str | None = Field(default=None, description="HMAC key for the webhook signature")
    desk_host: str = "127.0.0.1"
    desk_port: int = Field(default=8640, ge=0, le=65535)
    opendsr_trust_anchors_file: Path | None = Field(
        default=None, description="PEM CA certificates trusted to issue OpenDSR processors' certificates")
    opendsr_callback_url: str | None = Field(default=None, description="Our public callback URL")
    desk_secret: str | None = Field(default=None, description="Signs desk sessions; generated when unset")
    log_level: str = "INFO"
    # -- crypto-shredding: the key-encryption key wrapping data keys in the ledger (issue 9, item 5)
    kek: str | None = Field(
        default=None,
        description="base64 32-byte key-encryption key wrapping the ledger's data keys; during a rotation "
                    "the newest first, older ones after commas. Else <keys dir>/kek (`erasure keys init`)")

    # -- Kafka security (issue 9, item 3): every Kafka client, kafka-python and faust, uses these.
    kafka_security_protocol: Protocol = "PLAINTEXT"
    kafka_sasl_mechanism: Mechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password_env: str | None = Field(
        default=None, description="Name of the environment variable holding the SASL password (never the "
                                  "password itself)")
    kafka_sasl_oauth_token_file: Path | None = Field(
        default=None, description="OAUTHBEARER: a file holding the current token, read at each login")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA certificates the brokers' certificates must chain to; the "
                                  "system's CAs when unset")
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM key of the client certificate")
    kafka_ssl_check_hostname: bool = True

    # Issue 9, OpenDSR callbacks (item 6): whose callbacks the desk accepts.
    opendsr_controller_id: str | None = Field(
        default=None, description="The controller_id OpenDSR processors know us by; callbacks "
        "naming another are refused (required when OpenDSR systems are configured)")

    # Signed events (issue 9, item 2): the signers register, this component's private keys, rotation.
    signers_file: Path | None = Field(
        default=None, description="The signers register (public keys, entitlements); <keys dir>/signers.json")
    signing_keys_dir: Path | None = Field(
        default=None, description="Where this component's private signing keys are; <keys dir>/signing")
    signing_key_grace_s: float = Field(
        default=7 * 86400, ge=0, description="After `erasure keys rotate`, the old key is accepted this long")

    # -- desk and intake hardening (issue 9, item 7): sessions, login throttling, body caps, intake window --
    desk_cookie_secure: bool = Field(
        default=True, description="Session cookie sent over HTTPS only; false for plain-HTTP development")
    desk_session_idle_s: float = Field(default=30 * 60, gt=0, description="A session unused this long ends")
    desk_session_max_s: float = Field(
        default=12 * 3600, gt=0, description="A session ends this long after login")
    desk_login_max_failures: int = Field(
        default=5, ge=1, description="Failed logins for one account before it is locked out for a while")
    desk_login_max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed logins from one client address before it is locked out")
    desk_login_lockout_s: float = Field(
        default=30.0, gt=0, description="First lockout; it doubles with each further failure")
    desk_login_lockout_cap_s: float = Field(default=3600.0, gt=0, description="Longest lockout")
    desk_form_max_body_bytes: int = Field(default=16 * 1024, ge=1, description="Desk forms (login, actions)")
    intake_max_body_bytes: int = Field(default=64 * 1024, ge=1, description="POST /v1/erasure-requests")
    opendsr_callback_max_body_bytes: int = Field(
        default=256 * 1024, ge=1, description="POST /opendsr/callbacks")
    intake_max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="How far in the future an intake received_at may be")
    intake_max_age_s: float = Field(
        default=90 * 86400, gt=0, description="How old an intake received_at may be (clients set the clock)")

    # -- letters to the person (issue 13): who signs them, and the Chromium that prints them to PDF --
    letter_sender: str | None = Field(
        default=None, max_length=300,
        description="Printed under a letter (e.g. 'Example SAS, DPO, dpo@example.org'); "
        "'The data protection officer' when unset")
    chromium_path: Path = Field(
        default=Path("/usr/bin/chromium"), description="The Chromium that prints letters to PDF (Debian's)")

    # -- crash survival (issue 11): who owns a lane's partitions, liveness heartbeats, the stall threshold --
    connector_sole_owner: bool = Field(
        default=False, description="This connector process is its systems' only one: it takes every "
        "partition without joining the consumer group (no rebalance to wait for after a crash; offsets "
        "still committed to the group). `erasure up` sets it; false where processes share a system")
    heartbeat_file: Path | None = Field(
        default=None, description="Where this process reports liveness; its supervisor sets it")
    supervisor_stall_s: float = Field(
        default=60.0, gt=0, description="`erasure up` restarts a child whose loop has not turned, or has "
        "held work without finishing any, for this long")

    # -- broker loss and the operator's view (issue 11, items 4 and 6) --
    topic_check_interval_s: float = Field(
        default=5.0, gt=0, description="How often the stream worker checks that the broker still has the "
                                       "pipeline's topics (and creates again those it lost)")
    outbox_recheck_after_s: float = Field(
        default=30.0, gt=0, description="After this long, an intake request the router has not planned is "
                                        "published again (then 2, 4... times as long)")
    outbox_recheck_cap_s: float = Field(default=600.0, gt=0, description="Longest wait between those")
    broker_probe_timeout_s: float = Field(
        default=2.0, gt=0, description="How long /metrics and /readyz wait on the broker (lag, dead letters)")
    broker_figures_cache_s: float = Field(
        default=5.0, ge=0, description="How long /metrics reuses the broker's figures (lag, dead letters)")

    # -- cheap when idle (issue 12, item 5): how `erasure up` runs the connector lanes --
    up_connector_processes: Literal["one", "per-system"] = Field(
        default="one", description="`erasure up`: every connector lane in one process, a thread each "
        "(`one`: memory grows with the work, not with the number of systems), or a process per system "
        "(`per-system`: a lane that crashes its process takes no other down)")

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Self:
        check_settings(self.kafka_security_protocol, self.kafka_sasl_mechanism, self.kafka_sasl_username,
                       self.kafka_sasl_password_env, self.kafka_sasl_oauth_token_file,
                       {"kafka_ssl_cafile": self.kafka_ssl_cafile,
                        "kafka_ssl_certfile": self.kafka_ssl_certfile,
                        "kafka_ssl_keyfile": self.kafka_ssl_keyfile})
        return self

    @property
    def ledger_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home_dir / 'ledger.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.home_dir / "keys"

    @property
    def broker_file(self) -> Path:
        return self.home_dir / "broker.json"


def load_settings() -> Settings:
    return Settings()
