"""Sealed identities: sealed boxes from publishers, per-request data keys inside the pipeline.

Destroying a request's data key makes every copy of its identities (in Kafka, in
backups, in replays) unreadable: crypto-shredding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from pipeline.keywrap import KEK_SIZE, AesGcmKeyWrapper, KeyWrapError, kek_id
from schemas import Identity, SealedIdentities, SubjectIdentities
from schemas.identity import normalised_value

SEALED_BOX_ALG: Final = "sealedbox-x25519"
SECRET_BOX_ALG: Final = "secretbox-xsalsa20poly1305"


class SealError(Exception):
    """An envelope could not be opened: wrong key, tampered or truncated ciphertext."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def key_fingerprint(public_key: bytes) -> str:
    return "intake-" + hashlib.sha256(public_key).hexdigest()[:16]


def normalise(identity: Identity) -> str:
    return f"{identity.identity_type}:{normalised_value(identity.identity_type, identity.identity_value)}"


SUBJECT_REF_HEX_CHARS: Final = 32
# The only form a subject_ref takes: anything else (an e-mail, say) must not travel in clear.
SUBJECT_REF_PATTERN: Final = re.compile(rf"sr_[0-9a-f]{{{SUBJECT_REF_HEX_CHARS}}}")


def subject_ref(hmac_key: bytes, subject: SubjectIdentities) -> str:
    """A keyed pseudonym of the person: deduplication and look-ups, never reversible."""
    primary = min(subject.identities, key=lambda i: (i.identity_type != "email", normalise(i)))
    digest = hmac.new(hmac_key, normalise(primary).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sr_{digest[:SUBJECT_REF_HEX_CHARS]}"


def seal_for_intake(public_key: bytes, subject: SubjectIdentities) -> SealedIdentities:
    box = SealedBox(PublicKey(public_key))
    ciphertext = box.encrypt(subject.model_dump_json().encode("utf-8"))
    return SealedIdentities(
        alg=SEALED_BOX_ALG, key_id=key_fingerprint(public_key), ciphertext=_b64(ciphertext)
    )


def open_intake(private_key: bytes | PrivateKey, sealed: SealedIdentities) -> SubjectIdentities:
    """`private_key` as a `PrivateKey` too: made once, it spares each opening a scalar multiplication."""
    if sealed.alg != SEALED_BOX_ALG:
        raise SealError(f"expected {SEALED_BOX_ALG} identities from the publisher, got {sealed.alg}")
    try:
        key = private_key if isinstance(private_key, PrivateKey) else PrivateKey(private_key)
        plain = SealedBox(key).decrypt(_unb64(sealed.ciphertext))
    except (CryptoError, ValueError) as exc:
        raise SealError(
            f"identities sealed for key {sealed.key_id} cannot be opened with the intake key: "
            "the publisher may use a rotated or wrong public key"
        ) from exc
    return SubjectIdentities.model_validate_json(plain)


def new_data_key() -> bytes:
    return random_bytes(SecretBox.KEY_SIZE)


def seal_with_data_key(data_key: bytes, request_id: str, subject: SubjectIdentities) -> SealedIdentities:
    ciphertext = SecretBox(data_key).encrypt(subject.model_dump_json().encode("utf-8"))
    return SealedIdentities(alg=SECRET_BOX_ALG, key_id=request_id, ciphertext=_b64(bytes(ciphertext)))


def open_with_data_key(data_key: bytes, sealed: SealedIdentities) -> SubjectIdentities:
    if sealed.alg != SECRET_BOX_ALG:
        raise SealError(f"expected {SECRET_BOX_ALG} identities inside the pipeline, got {sealed.alg}")
    try:
        plain = SecretBox(data_key).decrypt(_unb64(sealed.ciphertext))
    except (CryptoError, ValueError) as exc:
        raise SealError(f"identities of request {sealed.key_id} cannot be opened") from exc
    return SubjectIdentities.model_validate_json(plain)


@dataclass(frozen=True)
class PipelineKeys:
    intake_public: bytes
    intake_private: bytes | None
    subject_ref_hmac: bytes | None


PUBLIC_FILE = "intake.pub"
PRIVATE_FILE = "intake.key"
SUBJECT_REF_FILE = "subject_ref.key"


class MissingKeyError(Exception):
    pass


def init_keys(keys_dir: Path, overwrite: bool = False) -> Path:
    """Create the intake key pair and the subject_ref HMAC key; private files are 0600."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    init_kek(keys_dir)  # never replaced by --force: that would shred every request in flight
    public_path = keys_dir / PUBLIC_FILE
    if public_path.exists() and not overwrite:
        return public_path
    private = PrivateKey.generate()
    write_secret(keys_dir / PRIVATE_FILE, _b64(bytes(private)))
    write_secret(keys_dir / SUBJECT_REF_FILE, _b64(os.urandom(32)))
    public_path.write_text(_b64(bytes(private.public_key)) + "\n", encoding="ascii")
    return public_path


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")


def _read_key(
    inline_b64: str | None, keys_dir: Path, filename: str, env_var: str, required: bool
) -> bytes | None:
    if inline_b64:
        return _unb64(inline_b64.strip())
    path = keys_dir / filename
    if path.exists():
        return _unb64(path.read_text(encoding="ascii").strip())
    if required:
        raise MissingKeyError(
            f"no {filename} in {keys_dir} and {env_var} is not set: "
            f"run `erasure keys init` or set {env_var}"
        )
    return None


def load_keys(
    keys_dir: Path,
    public_b64: str | None = None,
    private_b64: str | None = None,
    subject_ref_b64: str | None = None,
    need_private: bool = False,
) -> PipelineKeys:
    public = _read_key(public_b64, keys_dir, PUBLIC_FILE, "ERASURE_INTAKE_PUBLIC_KEY", True)
    assert public is not None
    return PipelineKeys(
        intake_public=public,
        intake_private=_read_key(
            private_b64, keys_dir, PRIVATE_FILE, "ERASURE_INTAKE_PRIVATE_KEY", need_private
        ),
        subject_ref_hmac=_read_key(
            subject_ref_b64, keys_dir, SUBJECT_REF_FILE, "ERASURE_SUBJECT_REF_KEY", need_private
        ),
    )


# -- the key-encryption key (KEK) wrapping data keys in the ledger ------------------------------
KEK_FILE = "kek"
KEK_ENV = "ERASURE_KEK"


def init_kek(keys_dir: Path) -> Path:
    """Create `<keys_dir>/kek` (0600) unless it exists: an existing KEK is never replaced."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / KEK_FILE
    if not path.exists():
        write_secret(path, _b64(os.urandom(KEK_SIZE)))
    return path


def rotate_kek(keys_dir: Path) -> str:
    """Put a new KEK first in `<keys_dir>/kek`, keeping the older ones to unwrap; its key id.

    Afterwards `erasure keys rewrap` moves every live data key to the new KEK; deleting the
    old lines then shreds whatever old copies (backups, dead rows) still hold.
    """
    path = keys_dir / KEK_FILE
    older = path.read_text(encoding="ascii").split() if path.exists() else []
    new = os.urandom(KEK_SIZE)
    # Written aside then renamed: a crash half-way must not lose the KEKs in force.
    staged = path.with_name(KEK_FILE + ".new")
    staged.unlink(missing_ok=True)
    write_secret(staged, "\n".join([_b64(new), *older]))
    os.replace(staged, path)
    return kek_id(new)


def load_kek(keys_dir: Path, kek_b64: str | None = None) -> AesGcmKeyWrapper:
    """The KEK ring from `kek_b64` (ERASURE_KEK), else `<keys_dir>/kek`: newest first, one a line or comma."""
    path = keys_dir / KEK_FILE
    if kek_b64:
        text, source = kek_b64, KEK_ENV
    elif path.exists():
        text, source = path.read_text(encoding="ascii"), str(path)
    else:
        raise MissingKeyError(f"no key-encryption key: {path} does not exist and {KEK_ENV} is not set; "
                              f"run `erasure keys init` or set {KEK_ENV} (base64, 32 bytes)")
    try:
        return AesGcmKeyWrapper([_unb64(part) for part in text.replace(",", " ").split()])
    except (ValueError, KeyWrapError) as exc:
        raise MissingKeyError(f"the key-encryption key in {source} is not usable ({exc}): "
                              f"expected base64 of {KEK_SIZE} random bytes, newest first") from None
