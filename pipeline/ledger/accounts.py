"""Who may use the desk and the HTTP intake: officer and viewer accounts, their sessions, intake
client tokens.

Passwords are hashed with scrypt at OWASP's current parameters (N=2^17, r=8, p=1), the parameters
stored in the hash (`scrypt$ln=17,r=8,p=1$salt$digest`); hashes of the older `scrypt$salt$digest`
form (N=2^14) still verify and are rehashed at the next login. An unknown user name costs the same
scrypt work as a known one, so timing does not tell which accounts exist.

A desk session is a row here, referred to by a random id in the signed cookie: logging out, a new
password or removing the account deletes the row, and the cookie is worth nothing. Session ids and
client tokens are random 256-bit secrets, so a SHA-256 digest is enough at rest. No secret is ever
stored or logged in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from pipeline.ledger.store import Ledger
from pipeline.ledger.tables import clients_table, sessions_table, users_table

Role = Literal["officer", "viewer"]


@dataclass(frozen=True)
class ScryptParams:
    log2_n: int
    r: int
    p: int

    def encode(self) -> str:
        return f"ln={self.log2_n},r={self.r},p={self.p}"

    @classmethod
    def decode(cls, text: str) -> ScryptParams:
        fields = dict(part.split("=", 1) for part in text.split(","))
        params = cls(int(fields["ln"]), int(fields["r"]), int(fields["p"]))
        if not (10 <= params.log2_n <= 22 and 1 <= params.r <= 32 and 1 <= params.p <= 16):
            raise ValueError("scrypt parameters out of range")
        return params


SCRYPT = ScryptParams(log2_n=17, r=8, p=1)  # OWASP Password Storage Cheat Sheet
LEGACY_SCRYPT = ScryptParams(log2_n=14, r=8, p=1)  # hashes written before the parameters were stored
# What an unknown user's password is checked against: the same work as a real check, never a match.
DUMMY_HASH = f"scrypt${SCRYPT.encode()}${'00' * 16}${'00' * 64}"


def scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    n = 2 ** params.log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=params.r, p=params.p,
                          maxmem=2 * 128 * params.r * n * params.p + (1 << 20), dklen=64)


def hash_password(password: str, params: ScryptParams = SCRYPT) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${params.encode()}${salt.hex()}${scrypt(password, salt, params).hex()}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, str]:
    parts = stored.split("$")
    if len(parts) == 3 and parts[0] == "scrypt":
        return LEGACY_SCRYPT, bytes.fromhex(parts[1]), parts[2]
    if len(parts) == 4 and parts[0] == "scrypt":
        return ScryptParams.decode(parts[1]), bytes.fromhex(parts[2]), parts[3]
    raise ValueError("not a scrypt hash")


def check_password(password: str, stored: str) -> bool:
    try:
        params, salt, digest_hex = _parse(stored)
    except (ValueError, KeyError):
        return False
    digest = scrypt(password, salt, params)
    return hmac.compare_digest(digest.hex(), digest_hex)


def needs_rehash(stored: str) -> bool:
    try:
        return _parse(stored)[0] != SCRYPT
    except (ValueError, KeyError):
        return True


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


token_digest = secret_digest


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
        """Create or replace an account; a replaced one's sessions end (a new password logs everyone out)."""
        if len(password) < 10:
            raise ValueError("a desk password has at least 10 characters")
        with self.writer.begin() as conn:
            conn.execute(sessions_table.delete().where(sessions_table.c.user_name == name))
            conn.execute(users_table.delete().where(users_table.c.name == name))
            conn.execute(users_table.insert().values(name=name, role=role, created_at=now,
                                                     password_hash=hash_password(password)))

    def remove_user(self, name: str) -> bool:
        """Delete an account and end its sessions; False when there was no such account."""
        with self.writer.begin() as conn:
            conn.execute(sessions_table.delete().where(sessions_table.c.user_name == name))
            return conn.execute(users_table.delete().where(users_table.c.name == name)).rowcount > 0

    def authenticate(self, name: str, password: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        if row is None:
            check_password(password, DUMMY_HASH)  # the same work as for a real account
            return None
        if not check_password(password, row.password_hash):
            return None
        if needs_rehash(row.password_hash):
            with self.writer.begin() as conn:
                conn.execute(users_table.update().where(
                    users_table.c.name == name, users_table.c.password_hash == row.password_hash).values(
                    password_hash=hash_password(password)))
        return User(row.name, row.role)

    def user(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        return User(row.name, row.role) if row is not None else None

    # -- sessions --------------------------------------------------------------------------------
    def open_session(self, name: str, now: datetime) -> str:
        """A new session for `name`; returns its id (for the signed cookie, never stored in clear)."""
        session_id = secrets.token_urlsafe(32)
        with self.writer.begin() as conn:
            conn.execute(sessions_table.insert().values(session_sha256=secret_digest(session_id),
                                                        user_name=name, created_at=now, last_seen_at=now))
        return session_id

    def session_user(self, session_id: str, now: datetime, idle_s: float, max_s: float) -> User | None:
        """The user of a live session, or None (unknown, revoked, idle too long, or too old)."""
        digest = secret_digest(session_id)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions_table, users_table.c.role).join(
                users_table, users_table.c.name == sessions_table.c.user_name).where(
                sessions_table.c.session_sha256 == digest)).first()
        if row is None:
            return None
        idle, age = now - row.last_seen_at, now - row.created_at
        if idle > timedelta(seconds=idle_s) or age > timedelta(seconds=max_s):
            self.close_session(session_id)
            return None
        if idle > timedelta(seconds=min(60.0, idle_s / 10)):  # not a write for every page
            with self.writer.begin() as conn:
                conn.execute(sessions_table.update().where(sessions_table.c.session_sha256 == digest)
                             .values(last_seen_at=now))
        return User(row.user_name, row.role)

    def close_session(self, session_id: str) -> None:
        with self.writer.begin() as conn:
            conn.execute(sessions_table.delete().where(
                sessions_table.c.session_sha256 == secret_digest(session_id)))

    # -- intake clients --------------------------------------------------------------------------
    def add_client(self, name: str, now: datetime) -> str:
        """A new token for an intake client (replacing any previous one); shown once."""
        token = "erk_" + secrets.token_urlsafe(32)
        with self.writer.begin() as conn:
            conn.execute(clients_table.delete().where(clients_table.c.name == name))
            conn.execute(clients_table.insert().values(name=name, token_sha256=token_digest(token),
                                                       created_at=now))
        return token

    def revoke_client(self, name: str) -> bool:
        """Delete a client's token: it is refused from now on. False when there was no such client."""
        with self.writer.begin() as conn:
            return conn.execute(clients_table.delete().where(clients_table.c.name == name)).rowcount > 0

    def client_for(self, token: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(clients_table.c.name).where(
                clients_table.c.token_sha256 == token_digest(token))).first()
        return row.name if row is not None else None
