"""The application's settings, read from ``MFA_WEBAPP_*`` environment variables."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Settings:
    """``mode``: ``local`` (mfa_flow makes the codes; the console gateway prints them) or ``stytch`` (Stytch, or
    ``mfa-flow serve`` at ``stytch_url``, makes and texts them). ``data_dir`` holds the SQLite files and the key."""

    mode: Literal["local", "stytch"] = "local"
    data_dir: Path = Path(tempfile.gettempdir()) / "mfa-flow-webapp"
    port: int = 8000
    stytch_url: str = "http://127.0.0.1:8123"
    stytch_project_id: str = "project-test-webapp"
    stytch_secret: str = "secret-test-webapp"  # noqa: S105 - the emulator's, as started in docs/webapp.md

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        mode = env.get("MFA_WEBAPP_MODE", "local")
        if mode not in ("local", "stytch"):
            raise SystemExit(f"MFA_WEBAPP_MODE must be 'local' or 'stytch', not {mode!r}")
        default = cls()
        return cls(
            mode="stytch" if mode == "stytch" else "local",
            data_dir=Path(env.get("MFA_WEBAPP_DATA", default.data_dir)),
            port=int(env.get("MFA_WEBAPP_PORT", default.port)),
            stytch_url=env.get("MFA_WEBAPP_STYTCH_URL", default.stytch_url),
            stytch_project_id=env.get("MFA_WEBAPP_STYTCH_PROJECT_ID", default.stytch_project_id),
            stytch_secret=env.get("MFA_WEBAPP_STYTCH_SECRET", default.stytch_secret),
        )


@dataclass(frozen=True)
class Keys:
    """Two keys derived from one secret: the flow's code HMACs, and the application's cookie and CSRF MACs."""

    mfa: bytes
    cookies: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> Keys:
        def derive(label: bytes) -> bytes:
            return hmac.new(secret, label, hashlib.sha256).digest()

        return cls(derive(b"mfa_flow secret_key"), derive(b"webapp cookies"))

    @classmethod
    def load(cls, data_dir: Path) -> Keys:
        """``data_dir/secret.key``, made (mode 0600) on the first start: every process and restart shares it."""
        path = data_dir / "secret.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
        return cls.from_secret(bytes.fromhex(path.read_text().strip()))
