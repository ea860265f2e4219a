"""Field encryption (AES-GCM, random nonce) and keyed blind indexes for lookups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


class FieldCipher:
    """Encrypts personal data; one master key yields separate encryption and index keys."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(master_key, b"miri field encryption v1"))
        self._index_key = _derive(master_key, b"miri blind index v1")

    def encrypt(self, text: str, context: str = "") -> bytes:
        nonce = os.urandom(_NONCE)
        # The column name as associated data stops a ciphertext being moved to another column.
        return nonce + self._aead.encrypt(nonce, text.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str = "") -> str:
        return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], context.encode()).decode()

    def blind_index(self, value: str) -> bytes:
        """Deterministic keyed hash for equality lookups; reveals nothing without the key."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).digest()


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def decode_key(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text.strip().encode())
    if len(raw) != 32:
        raise ValueError("the data key must decode to 32 bytes")
    return raw


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
