"""Encryption at rest for upstream API keys.

Keys are Fernet tokens made with ``SWITCHBOARD_ENCRYPTION_KEYS`` (first key
encrypts, every key decrypts, so a key can be rotated). A value in the setting
may be a Fernet key or any passphrase, which is stretched to one with SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def _fernet_key(value: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value.encode())
        if len(raw) == 32:
            return value.encode()
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest())


@cache
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def cipher() -> MultiFernet:
    return _cipher(tuple(settings.SWITCHBOARD_ENCRYPTION_KEYS))


def encrypt_secret(plaintext: str) -> str:
    return cipher().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt_secret(token: str) -> str:
    if not token:
        return ""
    try:
        return cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("stored secret cannot be decrypted with SWITCHBOARD_ENCRYPTION_KEY") from exc


def mask_secret(last4: str) -> str:
    """How a stored key is shown back: never more than its last four characters."""
    return f"…{last4}" if last4 else "—"
