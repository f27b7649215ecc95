"""The signing keys on disk: one private key file per signer, and the public register.

Layout (defaults; both paths are settings):

    <keys_dir>/signers.json           the register: public keys and entitlements (readable by all)
    <keys_dir>/signing/<signer>.key   one private key per signer, 0600 (`connector:brevo` ->
                                      `connector.brevo.key`); each component reads only its own

`ensure_signers` creates what is missing (`erasure keys init`, `erasure up`), and gives the
router and the desk the `request` entitlement when their entries are still as an older
`erasure keys init` wrote them (before requests were signed);
`rotate` gives a signer a new key and keeps the old public key valid for a grace
period, so records signed just before the rotation are still accepted.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from nacl.signing import SigningKey
from pydantic import ValidationError

from pipeline.codec import now_utc
from pipeline.crypto import MissingKeyError, write_secret
from pipeline.signing import (
    DESK,
    ROUTER,
    Signer,
    SignerEntry,
    SignerKey,
    SignersRegister,
    Verifier,
    default_entitlements,
)
from schemas.codec import describe_config_error

log = logging.getLogger(__name__)


# What `erasure keys init` gave these signers before requests were signed. An entry still exactly
# so was never edited by hand: it gets today's defaults, or the HTTP intake's requests (the desk's,
# and the outbox relay's under the router's key) would all be dead-lettered after an upgrade.
BEFORE_SIGNED_REQUESTS = {ROUTER: ["plan", "task:*"], DESK: ["task:*", "outcome:*"]}


class RegisterError(Exception):
    """The signers register is missing or invalid; the message names the file and what to do."""


def key_file(signing_dir: Path, signer_id: str) -> Path:
    return signing_dir / f"{signer_id.replace(':', '.')}.key"


def load_register(path: Path) -> SignersRegister:
    if not path.exists():
        raise RegisterError(f"no signers register at {path}: run `erasure keys init` "
                            "(or set ERASURE_SIGNERS_FILE)")
    try:
        return SignersRegister.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise RegisterError(describe_config_error(exc, path)) from None


def save_register(path: Path, register: SignersRegister) -> None:
    """Replace the register in one step: a verifier reloading it never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".json.tmp")
    staged.write_text(register.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    os.replace(staged, path)


def load_signer(signing_dir: Path, signer_id: str) -> Signer:
    path = key_file(signing_dir, signer_id)
    if not path.exists():
        raise MissingKeyError(f"no signing key for {signer_id!r} at {path}: run `erasure keys init` "
                              "(or mount this component's key there)")
    try:
        return Signer(signer_id, SigningKey(base64.b64decode(path.read_text(encoding="ascii").strip(),
                                                             validate=True)))
    except ValueError:  # binascii.Error, nacl's wrong length, non-ASCII text
        raise MissingKeyError(f"{path} is not a base64 Ed25519 signing key: restore it, or run "
                              f"`erasure keys rotate {signer_id}`") from None


def register_verifier(path: Path) -> Verifier:
    """A verifier over the register file that re-reads it when it changed (after a rotation)."""
    seen = [path.stat().st_mtime_ns if path.exists() else 0]

    def reload() -> SignersRegister | None:
        mtime = path.stat().st_mtime_ns if path.exists() else 0
        if mtime == seen[0]:
            return None
        seen[0] = mtime
        try:
            return load_register(path)
        except RegisterError as exc:  # a bad edit must not stop the consumers: keep the last good register
            log.error("signers register not reloaded, the previous one stays in force: %s", exc)
            return None

    return Verifier(load_register(path), reload)


def _new_key(signing_dir: Path, signer_id: str) -> SignerKey:
    signing_dir.mkdir(parents=True, exist_ok=True)
    private = SigningKey.generate()
    write_secret(key_file(signing_dir, signer_id), base64.b64encode(bytes(private)).decode("ascii"))
    return SignerKey(public_key=base64.b64encode(bytes(private.verify_key)).decode("ascii"))


def ensure_signers(register_path: Path, signing_dir: Path, signer_ids: Iterable[str]) -> list[str]:
    """Create a key and a register entry for each signer that has none; return the ids created."""
    register = load_register(register_path) if register_path.exists() else SignersRegister()
    created = []
    signers = [_upgraded(entry) for entry in register.signers]
    upgraded = [new.id for old, new in zip(register.signers, signers, strict=True) if new is not old]
    if upgraded:
        log.warning("signers register: %s may now sign requests (the HTTP intake's)", ", ".join(upgraded))
    for signer_id in signer_ids:
        if register.get(signer_id) is not None:
            continue  # its private key may be kept elsewhere (another machine, a secret store)
        signers.append(SignerEntry(id=signer_id, may_sign=default_entitlements(signer_id),
                                   keys=[_new_key(signing_dir, signer_id)]))
        created.append(signer_id)
    if created or upgraded or not register_path.exists():
        save_register(register_path, SignersRegister(signers=signers))
    return created


def _upgraded(entry: SignerEntry) -> SignerEntry:
    if BEFORE_SIGNED_REQUESTS.get(entry.id) != entry.may_sign:
        return entry
    return entry.model_copy(update={"may_sign": default_entitlements(entry.id)})


def rotate(register_path: Path, signing_dir: Path, signer_id: str, grace_s: float,
           now: datetime | None = None) -> SignerEntry:
    """A new key for `signer_id`; its previous keys are accepted for `grace_s` more, then refused."""
    register = load_register(register_path)
    entry = register.get(signer_id)
    if entry is None:
        known = ", ".join(s.id for s in register.signers) or "none"
        raise RegisterError(f"no signer {signer_id!r} in {register_path} (signers: {known})")
    now = now_utc() if now is None else now
    until = now + timedelta(seconds=grace_s)
    # Keys already ending sooner keep their end; keys already ended are dropped.
    kept = [k if k.not_after is not None and k.not_after <= until
            else k.model_copy(update={"not_after": until}) for k in entry.keys if k.in_force(now)]
    rotated = entry.model_copy(update={"keys": [*kept, _new_key(signing_dir, signer_id)]})
    save_register(register_path, SignersRegister(
        signers=[rotated if s.id == signer_id else s for s in register.signers]))
    return rotated
