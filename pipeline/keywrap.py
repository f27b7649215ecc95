"""Data keys wrapped by a key-encryption key (KEK) kept outside the ledger database.

The ledger stores each request's data key only wrapped: a copy of the database (a backup,
an old heap page, a stolen file) holds nothing that opens the identities without the KEK.
Retiring a KEK shreds every key it wrapped at once, wherever the copies are.

`KeyWrapper` is what the ledger needs; a KMS (Vault transit, AWS/GCP KMS) can implement it.
`AesGcmKeyWrapper` is the default: 32-byte keys from `<keys_dir>/kek` or `ERASURE_KEK`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_SIZE: Final = 32
DATA_KEY_SIZE: Final = 32
_KEY_ID_SIZE: Final = 4
_NONCE_SIZE: Final = 12
# key id | nonce | AES-GCM(data key) with its 16-byte tag: 64 bytes, the ledger column's size.
WRAPPED_SIZE: Final = _KEY_ID_SIZE + _NONCE_SIZE + DATA_KEY_SIZE + 16


class KeyWrapError(Exception):
    """A data key cannot be wrapped or unwrapped; the message names the request, never a key."""


class KeyWrapper(Protocol):
    """Wraps per-request data keys; the request id is bound to the wrapped bytes."""

    @property
    def key_id(self) -> str:
        """The KEK new keys are wrapped with (it changes when the KEK rotates)."""
        ...

    def wrap(self, request_id: str, data_key: bytes) -> bytes:
        """The data key, encrypted and authenticated together with `request_id`."""
        ...

    def unwrap(self, request_id: str, wrapped: bytes) -> bytes:
        """The data key; `KeyWrapError` when its KEK is gone or it was wrapped for another request."""
        ...

    def wrapped_with(self, wrapped: bytes) -> str:
        """The id of the KEK that wrapped these bytes (re-wrapping moves them to `key_id`)."""
        ...


def kek_id(kek: bytes) -> str:
    """A KEK's public name: a digest prefix, which tells nothing of the key."""
    return hashlib.blake2b(kek, digest_size=_KEY_ID_SIZE, person=b"erasure-kek-id").hexdigest()


def is_clear_data_key(stored: bytes) -> bool:
    """A data key written before wrapping existed (a raw 32-byte key); wrapped keys are longer."""
    return len(stored) == DATA_KEY_SIZE


class AesGcmKeyWrapper:
    """AES-256-GCM under a ring of KEKs: the first wraps, all of them unwrap (during a rotation)."""

    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise KeyWrapError("no key-encryption key given")
        for kek in keks:
            if len(kek) != KEK_SIZE:
                raise KeyWrapError(f"a key-encryption key is {KEK_SIZE} bytes, got {len(kek)}")
        self._ring = {bytes.fromhex(kek_id(kek)): AESGCM(kek) for kek in keks}
        self._current = bytes.fromhex(kek_id(keks[0]))

    @classmethod
    def generate(cls) -> AesGcmKeyWrapper:
        """A wrapper under a fresh KEK held in memory only (tests, throw-away ledgers)."""
        return cls([os.urandom(KEK_SIZE)])

    @property
    def key_id(self) -> str:
        return self._current.hex()

    def wrap(self, request_id: str, data_key: bytes) -> bytes:
        if len(data_key) != DATA_KEY_SIZE:
            raise KeyWrapError(f"the data key of request {request_id} is not {DATA_KEY_SIZE} bytes")
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._ring[self._current].encrypt(nonce, data_key, request_id.encode("utf-8"))
        return self._current + nonce + sealed

    def unwrap(self, request_id: str, wrapped: bytes) -> bytes:
        if len(wrapped) != WRAPPED_SIZE:
            raise KeyWrapError(f"the stored data key of request {request_id} is not a wrapped key")
        key_id, nonce, sealed = (wrapped[:_KEY_ID_SIZE], wrapped[_KEY_ID_SIZE:_KEY_ID_SIZE + _NONCE_SIZE],
                                 wrapped[_KEY_ID_SIZE + _NONCE_SIZE:])
        aead = self._ring.get(key_id)
        if aead is None:
            raise KeyWrapError(f"the data key of request {request_id} was wrapped with KEK {key_id.hex()}, "
                               "which is not among the configured KEKs (retired, or the wrong key file)")
        try:
            return aead.decrypt(nonce, sealed, request_id.encode("utf-8"))
        except InvalidTag:
            raise KeyWrapError(f"the stored data key of request {request_id} does not open: "
                               "it was wrapped for another request or altered") from None

    def wrapped_with(self, wrapped: bytes) -> str:
        return wrapped[:_KEY_ID_SIZE].hex()
