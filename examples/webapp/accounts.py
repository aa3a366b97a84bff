"""The application's own user table: e-mail addresses, scrypt password hashes, roles and TOTP secrets.

mfa_flow never sees a password: the application checks it, then tells the flow which member passed primary
authentication. The organizations and members (ids, phones) come from ``fixtures.json``, the same file
``mfa-flow serve --fixtures`` reads in Stytch mode.
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
from typing import Any

from mfa_flow import Member, Organization

FIXTURES = Path(__file__).with_name("fixtures.json")

# Demo passwords, hashed at start-up; a real application stores only the hashes.
DEMO_PASSWORDS = {
    "ada@example.com": "ada-demo-password",
    "barbara@example.com": "barbara-demo-password",
    "grace@example.com": "grace-demo-password",
    "alan@example.com": "alan-demo-password",
    "margaret@example.com": "margaret-demo-password",
}
ADMINS = frozenset({"margaret@example.com"})
# Alan's authenticator app secret (RFC 6238, base32): the well-known example key, for a demo only.
TOTP_SECRETS = {"alan@example.com": "JBSWY3DPEHPK3PXP"}

# scrypt's cost: 16 MiB and ~50 ms per hash (OWASP's minimum is N=2**17 with r=8; lower here so that the demo and
# its tests start quickly; raise it in production).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(computed, bytes.fromhex(digest))


# Checked against when the e-mail address is unknown, so that the answer takes as long as for a known one.
_NOBODY = hash_password(secrets.token_urlsafe(16))


def totp(secret: str, at: float, *, step: int = 30) -> str:
    """The RFC 6238 code (SHA-1, 6 digits) of ``secret`` at UNIX time ``at``."""
    mac = hmac.new(base64.b32decode(secret), struct.pack(">Q", int(at // step)), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def verify_totp(secret: str, code: str, at: float) -> bool:
    """The code of this 30-second step or of either neighbour (clock drift)."""
    return any(hmac.compare_digest(code.encode(), totp(secret, at + drift).encode()) for drift in (-30, 0, 30))


@dataclass(frozen=True)
class Account:
    email: str
    organization_id: str
    member_id: str
    name: str
    password_hash: str
    is_admin: bool = False
    totp_secret: str = ""


class Accounts:
    """The user table, by e-mail address and by member id, with the records a local-mode directory holds."""

    def __init__(self, fixtures: dict[str, Any]) -> None:
        self.organizations = [Organization(**entry) for entry in fixtures["organizations"]]
        self.members = [Member(**entry) for entry in fixtures["members"]]
        self.by_email = {
            m.email_address: Account(m.email_address, m.organization_id, m.member_id, m.name,
                                     hash_password(DEMO_PASSWORDS[m.email_address]),
                                     is_admin=m.email_address in ADMINS,
                                     totp_secret=TOTP_SECRETS.get(m.email_address, ""))
            for m in self.members
        }
        self.by_member = {a.member_id: a for a in self.by_email.values()}

    @classmethod
    def load(cls, path: Path = FIXTURES) -> Accounts:
        return cls(json.loads(path.read_text("utf-8")))

    def check_password(self, email: str, password: str) -> Account | None:
        """The account whose password this is, or None; as slow for an unknown address as for a known one."""
        account = self.by_email.get(email.strip().lower())
        ok = verify_password(password, account.password_hash if account else _NOBODY)
        return account if ok and account else None
