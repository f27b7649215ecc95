"""Embedded demo for `erasure up`: a fake Brevo and a small SQLite "site database"."""

from __future__ import annotations

import secrets
from pathlib import Path

import requests
import sqlalchemy as sa
import yaml

DEMO_BREVO_KEY_ENV = "ERASURE_DEMO_BREVO_API_KEY"
DEMO_PEOPLE = [
    # (full name, email, phone, in Brevo)
    ("Alice Martin", "alice.martin@example.org", "+33600000001", True),
    ("Bruno Dupont", "bruno.dupont@example.org", "+33600000002", True),
    ("Chloé Bernard", "chloe.bernard@example.org", "+33600000003", True),
    ("David Petit", "david.petit@example.org", "+33600000004", False),
]

SITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS accounts (
        id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL UNIQUE, full_name VARCHAR(200),
        phone VARCHAR(40), created_at VARCHAR(40) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS newsletter_consents (
        id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, consented_at VARCHAR(40) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS support_messages (
        id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id),
        author_email VARCHAR(320) NOT NULL, body TEXT NOT NULL)""",
]


Person = tuple[str, str, str, bool]


def seed_site_database(url: str, people: list[Person] | None = None) -> None:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # persistent: readers never block the eraser
    with engine.begin() as conn:
        for statement in SITE_SCHEMA:
            conn.exec_driver_sql(statement)
        for index, (name, email, phone, _) in enumerate(people or DEMO_PEOPLE, start=1):
            exists = conn.execute(sa.text("SELECT 1 FROM accounts WHERE email = :e"), {"e": email})
            if exists.first():
                continue
            conn.execute(sa.text(
                "INSERT INTO accounts (id, email, full_name, phone, created_at) "
                "VALUES (:i, :e, :n, :p, '2025-01-15T10:00:00Z')"), {"i": index, "e": email, "n": name,
                                                                    "p": phone})
            conn.execute(sa.text("INSERT INTO newsletter_consents (email, consented_at) "
                                 "VALUES (:e, '2025-01-15T10:00:00Z')"), {"e": email})
            conn.execute(sa.text("INSERT INTO support_messages (account_id, author_email, body) "
                                 "VALUES (:i, :e, 'Bonjour, ma commande est en retard.')"),
                         {"i": index, "e": email})
    engine.dispose()


def seed_brevo(base_url: str, api_key: str, people: list[Person] | None = None) -> None:
    for name, email, phone, in_brevo in people or DEMO_PEOPLE:
        if in_brevo:
            requests.post(f"{base_url}/v3/contacts", headers={"api-key": api_key}, timeout=5,
                          json={"email": email, "attributes": {"FIRSTNAME": name.split()[0],
                                                              "SMS": phone}})


def demo_systems(site_db_url: str, brevo_url: str) -> dict[str, object]:
    return {"systems": [
        {"id": "site-db", "kind": "internal", "location": "France (site's own server)",
         "data_categories": ["account", "profile", "support", "newsletter_consent"],
         "expected_turnaround_s": 30,
         "connector": {"type": "sql", "url": site_db_url, "tables": [
             {"table": "support_messages", "match": {"email": "author_email"}, "action": "delete"},
             {"table": "newsletter_consents", "match": {"email": "email"}, "action": "delete"},
             {"table": "accounts", "match": {"email": "email", "phone": "phone"},
              "action": "delete"},
         ]}},
        {"id": "brevo", "kind": "processor", "location": "France / EU (Brevo SAS)",
         "contract": "Brevo DPA (demo)", "data_categories": ["newsletter", "email_marketing"],
         "expected_turnaround_s": 60,
         "connector": {"type": "brevo", "base_url": brevo_url, "api_key_env": DEMO_BREVO_KEY_ENV}},
    ]}


def write_demo(home: Path, brevo_url: str) -> Path:
    site_db = home / "site.db"
    site_url = f"sqlite:///{site_db.resolve()}"
    seed_site_database(site_url)
    path = home / "systems.yaml"
    path.write_text("# Demo register written by `erasure up`; edit or point ERASURE_SYSTEMS_FILE "
                    "elsewhere.\n" + yaml.safe_dump(demo_systems(site_url, brevo_url), sort_keys=False),
                    encoding="utf-8")
    return path


def demo_api_key() -> str:
    return "xkeysib-demo-" + secrets.token_hex(16)
