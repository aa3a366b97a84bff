"""Codes, tokens and the key ring: what is secret and how it is kept only as a digest."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from mfa_flow.errors import ConfigurationError

__all__ = ["CODE_DIGITS", "Keyring", "generate_code", "is_code_shaped", "new_id", "new_token", "token_digest"]

CODE_DIGITS = 6
MIN_KEY_BYTES = 32
_CODE_SPACE = 10**CODE_DIGITS
_DIGITS = frozenset("0123456789")


def generate_code() -> str:
    """Six decimal digits from ``secrets`` (leading zeros included)."""
    return f"{secrets.randbelow(_CODE_SPACE):06d}"


def is_code_shaped(value: object) -> bool:
    """Exactly six ASCII digits; anything else is a wrong code."""
    return isinstance(value, str) and len(value) == CODE_DIGITS and _DIGITS.issuperset(value)


def new_id(nbytes: int) -> str:
    """An id that must be unique, not secret (a code's, a session's): ``nbytes`` from the OS, as hex."""
    return os.urandom(nbytes).hex()


def new_token() -> str:
    """A session or intermediate session token: 256 bits from ``secrets``."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens are stored and looked up only by their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


class Keyring:
    """HMAC keys for codes: the first signs, all verify (rotation). Never written to a store."""

    __slots__ = ("_keys",)

    def __init__(self, secret_key: bytes | Sequence[bytes] | None) -> None:
        if secret_key is None:
            keys: tuple[bytes, ...] = (secrets.token_bytes(MIN_KEY_BYTES),)
        elif isinstance(secret_key, bytes | bytearray):
            keys = (bytes(secret_key),)
        elif isinstance(secret_key, str) or not isinstance(secret_key, Sequence):
            raise ConfigurationError("secret_key: must be bytes or a sequence of bytes")
        else:
            keys = tuple(secret_key)  # type: ignore[arg-type]  # a Sequence that is not bytes
        if not keys:
            raise ConfigurationError("secret_key: at least one key is required")
        for key in keys:
            if not isinstance(key, bytes | bytearray):
                raise ConfigurationError("secret_key: every key must be bytes")
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(f"secret_key: every key must be at least {MIN_KEY_BYTES} bytes")
        self._keys = tuple(bytes(k) for k in keys)

    def __repr__(self) -> str:
        return f"Keyring(<{len(self._keys)} key(s)>)"

    def sign(self, code_id: str, code: str) -> bytes:
        return hmac.digest(self._keys[0], f"{code_id}\x00{code}".encode(), "sha256")  # OpenSSL's one-shot HMAC

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        message = f"{code_id}\x00{code}".encode()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not tell which key matched
            matched |= hmac.compare_digest(hmac.digest(key, message, "sha256"), digest)
        return matched
