"""Embedded demo for `erasure up`: a site database, a fake Brevo, uploads and (when it answers) Redis.

One demo request shows erased, not-found and held outcomes side by side: the site
keeps invoices, orders, card data and fraud signals under the retention policy and
erases the rest.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import sqlalchemy as sa
import yaml

from pipeline.codec import now_utc
from pipeline.devstack.fake_brevo import FakeBrevo

if TYPE_CHECKING:
    from pipeline.ledger import Ledger

DEMO_BREVO_KEY_ENV = "ERASURE_DEMO_BREVO_API_KEY"
DEMO_BREVO_LIMIT_PER_S = 1000
DEMO_REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str
    in_brevo: bool = True
    in_site: bool = True
    orders: int = 0
    card_added_days_ago: int | None = None
    fraud_signal: bool = False


DEMO_PEOPLE = [
    # Alice shows all three outcomes: the site holds her invoices, orders, card and fraud
    # signals; Brevo never had her; her uploads and sessions are erased.
    Person("Alice Martin", "alice.martin@example.org", "+33600000001", in_brevo=False, orders=2,
           card_added_days_ago=40, fraud_signal=True),
    Person("Bruno Dupont", "bruno.dupont@example.org", "+33600000002"),
    Person("Chloé Bernard", "chloe.bernard@example.org", "+33600000003", in_site=False),
    Person("David Petit", "david.petit@example.org", "+33600000004", in_brevo=False,
           card_added_days_ago=900),
]

site_metadata = sa.MetaData()
_Text = sa.String(320)
accounts = sa.Table(
    "accounts", site_metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", _Text, unique=True), sa.Column("full_name", sa.String(200)),
    sa.Column("phone", sa.String(40)), sa.Column("created_at", sa.DateTime, nullable=False))
profiles = sa.Table(
    "profiles", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("bio", sa.Text), sa.Column("avatar_path", sa.String(200)))
addresses = sa.Table(
    "addresses", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("line1", sa.String(200)), sa.Column("city", sa.String(100)),
    sa.Column("postcode", sa.String(20)))
orders = sa.Table(
    "orders", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("placed_at", sa.DateTime, nullable=False), sa.Column("total_cents", sa.Integer),
    sa.Column("retain_until", sa.DateTime))
invoices = sa.Table(
    "invoices", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("number", sa.String(40), nullable=False), sa.Column("issued_at", sa.DateTime, nullable=False),
    sa.Column("amount_cents", sa.Integer), sa.Column("billing_name", sa.String(200)),
    sa.Column("billing_email", _Text))
payment_tokens = sa.Table(
    "payment_tokens", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("card_last4", sa.String(4)), sa.Column("expiry", sa.String(7)),
    sa.Column("created_at", sa.DateTime, nullable=False), sa.Column("retain_until", sa.DateTime))
fraud_signals = sa.Table(
    "fraud_signals", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("device_fingerprint", sa.String(64)), sa.Column("risk_score", sa.Integer),
    sa.Column("observed_at", sa.DateTime, nullable=False))
support_messages = sa.Table(
    "support_messages", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("author_email", _Text), sa.Column("body", sa.Text))
newsletter_consents = sa.Table(
    "newsletter_consents", site_metadata, sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", _Text, nullable=False), sa.Column("consented_at", sa.DateTime, nullable=False))

ACCOUNT_MATCH = {"email": "email", "phone": "phone"}


def _via_accounts() -> dict[str, Any]:
    return {"table": "accounts", "key": "id", "column": "account_id", "match": ACCOUNT_MATCH}


def site_rules() -> list[dict[str, Any]]:
    """Children before parents; holds name the category their retention rule covers."""
    return [
        {"table": "support_messages", "via": _via_accounts(), "action": "delete", "category": "support"},
        {"table": "newsletter_consents", "match": {"email": "email"}, "action": "delete",
         "category": "newsletter_consent"},
        {"table": "profiles", "via": _via_accounts(), "action": "delete", "category": "profile"},
        {"table": "addresses", "via": _via_accounts(), "action": "delete", "category": "address"},
        {"table": "fraud_signals", "via": _via_accounts(), "action": "hold", "category": "fraud_signals",
         "hold_mode": "archive"},
        {"table": "invoices", "match": {"email": "billing_email"}, "action": "hold",
         "category": "invoices", "hold_mode": "archive", "clock_column": "issued_at"},
        {"table": "payment_tokens", "via": _via_accounts(), "action": "hold", "category": "card_data",
         "hold_mode": "mark", "clock_column": "created_at"},
        {"table": "orders", "via": _via_accounts(), "action": "hold", "category": "accounting_records",
         "hold_mode": "mark", "clock_column": "placed_at"},
        # Held orders still refer to the account: it stays, as an empty shell.
        {"table": "accounts", "match": ACCOUNT_MATCH, "action": "anonymise", "category": "account",
         "set": {"email": None, "full_name": None, "phone": None}},
    ]


def seed_site_database(url: str, people: list[Person] | None = None) -> None:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # persistent: readers never block the eraser
    site_metadata.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        next_id = (conn.execute(sa.select(sa.func.max(accounts.c.id))).scalar() or 0) + 1
        for person in people or DEMO_PEOPLE:
            if not person.in_site:
                continue
            if conn.execute(sa.select(accounts.c.id).where(accounts.c.email == person.email)).first():
                continue
            account_id, next_id = next_id, next_id + 1
            conn.execute(accounts.insert().values(id=account_id, email=person.email, full_name=person.name,
                                                  phone=person.phone, created_at=now - timedelta(days=500)))
            conn.execute(profiles.insert().values(account_id=account_id, bio="Amateur de randonnée",
                                                  avatar_path=f"avatars/{account_id}.png"))
            conn.execute(addresses.insert().values(account_id=account_id, line1="12 rue des Lilas",
                                                   city="Lyon", postcode="69003"))
            conn.execute(newsletter_consents.insert().values(email=person.email,
                                                             consented_at=now - timedelta(days=400)))
            conn.execute(support_messages.insert().values(
                account_id=account_id, author_email=person.email,
                body="Bonjour, ma commande est en retard."))
            for number in range(person.orders):
                placed = now - timedelta(days=60 + 30 * number)
                inserted = conn.execute(orders.insert().values(
                    account_id=account_id, placed_at=placed, total_cents=4990 + number))
                order_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                conn.execute(invoices.insert().values(
                    order_id=order_id, number=f"F{account_id:04d}-{number:03d}", issued_at=placed,
                    amount_cents=4990 + number, billing_name=person.name, billing_email=person.email))
            if person.card_added_days_ago is not None:
                conn.execute(payment_tokens.insert().values(
                    account_id=account_id, card_last4="4242", expiry="12/2029",
                    created_at=now - timedelta(days=person.card_added_days_ago)))
            if person.fraud_signal:
                conn.execute(fraud_signals.insert().values(
                    account_id=account_id, device_fingerprint=secrets.token_hex(8), risk_score=12,
                    observed_at=now - timedelta(days=10)))
    engine.dispose()


def seed_brevo(base_url: str, api_key: str, people: list[Person] | None = None) -> None:
    for person in people or DEMO_PEOPLE:
        if person.in_brevo:
            requests.post(f"{base_url}/v3/contacts", headers={"api-key": api_key}, timeout=5,
                          json={"email": person.email, "attributes": {
                              "FIRSTNAME": person.name.split()[0], "SMS": person.phone}})


def demo_systems(site_db_url: str, brevo_url: str, redis_url: str | None = None,
                 uploads_dir: Path | None = None) -> dict[str, object]:
    systems: list[dict[str, Any]] = [
        {"id": "site-db", "kind": "internal", "location": "France (site's own server)",
         "data_categories": ["account", "profile", "address", "orders", "invoices", "accounting_records",
                             "card_data", "fraud_signals", "support", "newsletter_consent"],
         "expected_turnaround_s": 30, "backup_retention": "P35D",  # `erasure replay` after a restore
         "connector": {"type": "sql", "url": site_db_url, "tables": site_rules()}},
        {"id": "brevo", "kind": "processor", "name": "Brevo", "location": "France / EU (Brevo SAS)",
         "contract": "Brevo DPA (demo)", "data_categories": ["newsletter", "email_marketing"],
         "expected_turnaround_s": 60,
         "connector": {"type": "brevo", "base_url": brevo_url, "api_key_env": DEMO_BREVO_KEY_ENV},
         # the demo's fake Brevo allows 1,000 calls a second, not the real account's 10
         "rate_limit": {"requests": DEMO_BREVO_LIMIT_PER_S, "per_s": 1.0}},
    ]
    if redis_url:
        systems.append(
            {"id": "session-cache", "kind": "internal", "location": "France (site's own Redis)",
             "data_categories": ["session", "profile"], "expected_turnaround_s": 30,
             "connector": {"type": "redis", "url": redis_url, "rules": [
                 {"kind": "keys", "pattern": "session:{email}:*"},
                 {"kind": "keys", "pattern": "cache:profile:{email}"},
                 {"kind": "hash_field", "key": "newsletter:pending", "field": "{email}"},
                 {"kind": "set_member", "key": "marketing:optin", "member": "{email}"},
                 {"kind": "sorted_set_member", "key": "reviews:top-authors", "member": "{email}"},
             ]}})
    if uploads_dir is not None:
        systems.append(
            {"id": "uploads", "kind": "internal", "location": "France (site's own disk)",
             "data_categories": ["uploads"], "expected_turnaround_s": 30,
             "connector": {"type": "files", "root": str(uploads_dir), "paths": [
                 "avatars/{email}", "exports/{email}.zip"]}})
    return {"systems": systems}


def seed_redis(url: str, people: list[Person] | None = None) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for person in people or DEMO_PEOPLE:
        client.set(f"session:{person.email}:{secrets.token_hex(4)}", "opaque-session")
        client.set(f"cache:profile:{person.email}", person.name)
        client.hset("newsletter:pending", person.email, "2026-11-01")
        client.sadd("marketing:optin", person.email)
        client.zadd("reviews:top-authors", {person.email: 3})
    client.close()


def seed_uploads(root: Path, people: list[Person] | None = None) -> None:
    for person in people or DEMO_PEOPLE:
        avatar_dir = root / "avatars" / person.email
        avatar_dir.mkdir(parents=True, exist_ok=True)
        (avatar_dir / "avatar.png").write_bytes(b"\x89PNG demo")
        (root / "exports").mkdir(exist_ok=True)
        (root / "exports" / f"{person.email}.zip").write_bytes(b"PK demo export")


def redis_answers(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def write_demo(home: Path, brevo_url: str) -> Path:
    site_url = f"sqlite:///{(home / 'site.db').resolve()}"
    seed_site_database(site_url)
    uploads = (home / "uploads").resolve()
    seed_uploads(uploads)
    redis_url = DEMO_REDIS_URL if redis_answers(DEMO_REDIS_URL) else None
    if redis_url:
        seed_redis(redis_url)
    path = home / "systems.yaml"
    path.write_text("# Demo register written by `erasure up`; edit or point ERASURE_SYSTEMS_FILE "
                    "elsewhere.\n" + yaml.safe_dump(demo_systems(site_url, brevo_url, redis_url, uploads),
                                                    sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


def demo_api_key() -> str:
    return "xkeysib-demo-" + secrets.token_hex(16)


def start_demo(home: Path) -> tuple[FakeBrevo, dict[str, str]]:
    """Serve a seeded fake Brevo and write the demo register; the fake and the variables naming both."""
    key = demo_api_key()
    brevo = FakeBrevo({key})
    url = brevo.start()
    seed_brevo(url, key)
    return brevo, {DEMO_BREVO_KEY_ENV: key, "ERASURE_SYSTEMS_FILE": str(write_demo(home, url).resolve())}


def demo_accounts(ledger: Ledger, home: Path) -> None:
    """A demo officer and intake client, their secrets in owner-only files of the home dir."""
    from pipeline.ledger.accounts import Access
    from pipeline.wiring import write_private

    access = Access(ledger)
    password_file = home / "demo-officer.password"
    if not password_file.exists():
        password = secrets.token_urlsafe(12)
        access.set_user("demo-officer", "officer", password, now_utc())
        write_private(password_file, password + "\n")
        write_private(home / "demo-intake.token", access.add_client("demo", now_utc()) + "\n")
