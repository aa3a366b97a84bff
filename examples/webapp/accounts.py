"""The application's own user table: e-mail addresses, scrypt password hashes, roles and TOTP secrets.

mfa_flow never sees a password: the application checks it, then tells the flow which member passed primary
authentication. ``accounts.json`` holds the table (hashes only); the organizations and members (ids, phones) come
from ``fixtures.json``, the file ``mfa-flow serve --fixtures`` reads in Stytch mode. The demo passwords are the
name before the ``@`` followed by ``-demo-password``; to add someone, store ``hash_password(their_password)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from mfa_flow.files import load_fixtures

HERE = Path(__file__).parent

# Django's scrypt cost (16 MiB, tens of milliseconds per hash); OWASP asks N=2**17 today: raise it in production.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOTP_STEP = 30  # seconds: RFC 6238's time step


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told: N=2**15 and above need maxmem (its B and V arrays).
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, bytes.fromhex(digest))


# Checked against when the address is unknown, so that the answer takes as long as for a known one: made here,
# by hash_password, so that it follows SCRYPT_N.
_NOBODY = hash_password(secrets.token_urlsafe(32))


def totp(secret: str, at: float) -> str:
    """The RFC 6238 code (SHA-1, 6 digits) of a base32 ``secret`` at UNIX time ``at``."""
    return _totp(base64.b32decode(secret), int(at // TOTP_STEP))


def _totp(key: bytes, step: int) -> str:
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def totp_step(secret: str, code: str, at: float) -> int | None:
    """The time step whose code this is: this 30-second step or either neighbour (clock drift); None when it
    is none of them, or when there is no secret (an empty key would make a code anyone can compute).

    The caller accepts a step only once, and none before it (RFC 6238 section 5.2): see EventLog.claim_totp_step."""
    if not secret:
        return None
    key, now = base64.b32decode(secret), int(at // TOTP_STEP)
    return next((step for step in (now + 1, now, now - 1)
                 if hmac.compare_digest(code.encode(), _totp(key, step).encode())), None)


@dataclass(frozen=True)
class Account:
    email: str
    organization_id: str
    member_id: str
    name: str
    password_hash: str
    is_admin: bool = False
    totp_secret: str = ""  # Alan's is RFC 6238's well-known example key: a demo only


class Accounts:
    """The user table, by e-mail address and by member id, and the records (``fixtures``) a local-mode
    directory holds."""

    def __init__(self, fixtures_path: Path = HERE / "fixtures.json", table_path: Path = HERE / "accounts.json") -> None:
        self.fixtures = load_fixtures(fixtures_path)  # checked whole: ids, phones, one number per member
        members = {m.email_address: m for m in self.fixtures.members}
        self.by_email = {
            row["email"]: Account(row["email"], members[row["email"]].organization_id,
                                  members[row["email"]].member_id, members[row["email"]].name, row["password_hash"],
                                  is_admin=row["admin"], totp_secret=row["totp_secret"])
            for row in json.loads(table_path.read_text("utf-8"))
        }
        self.by_member = {a.member_id: a for a in self.by_email.values()}

    def check_password(self, email: str, password: str) -> Account | None:
        """The account whose password this is, or None; as slow for an unknown address as for a known one."""
        account = self.by_email.get(email.strip().lower())
        ok = verify_password(password, account.password_hash if account else _NOBODY)
        return account if ok and account else None
