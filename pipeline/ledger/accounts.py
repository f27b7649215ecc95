"""Who may use the desk and the HTTP intake: officer and viewer accounts, intake client tokens.

Passwords are hashed with scrypt; client tokens are random 256-bit secrets, so a
SHA-256 digest is enough at rest. Neither is ever stored or logged in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from pipeline.ledger.store import Ledger
from pipeline.ledger.tables import clients_table, users_table

Role = Literal["officer", "viewer"]

SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def is_officer(self) -> bool:
        return self.role == "officer"


class Access:
    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine
        self.writer = ledger.writer

    def set_user(self, name: str, role: Role, password: str, now: datetime) -> None:
        if len(password) < 10:
            raise ValueError("a desk password has at least 10 characters")
        with self.writer.begin() as conn:
            conn.execute(users_table.delete().where(users_table.c.name == name))
            conn.execute(users_table.insert().values(name=name, role=role, created_at=now,
                                                     password_hash=hash_password(password)))

    def authenticate(self, name: str, password: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        if row is None or not check_password(password, row.password_hash):
            return None
        return User(row.name, row.role)

    def user(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        return User(row.name, row.role) if row is not None else None

    def add_client(self, name: str, now: datetime) -> str:
        """A new token for an intake client (replacing any previous one); shown once."""
        token = "erk_" + secrets.token_urlsafe(32)
        with self.writer.begin() as conn:
            conn.execute(clients_table.delete().where(clients_table.c.name == name))
            conn.execute(clients_table.insert().values(name=name, token_sha256=token_digest(token),
                                                       created_at=now))
        return token

    def client_for(self, token: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(clients_table.c.name).where(
                clients_table.c.token_sha256 == token_digest(token))).first()
        return row.name if row is not None else None
