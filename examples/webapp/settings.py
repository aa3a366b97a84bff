"""The application's settings, read from ``MFA_WEBAPP_*`` environment variables."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Settings:
    """``mode``: ``local`` (mfa_flow makes the codes; the console gateway prints them) or ``stytch`` (Stytch, or
    ``mfa-flow serve`` at ``stytch_url``, makes and texts them). ``data_dir`` holds the SQLite files and the key;
    it must be the current user's and writable by no one else (``private_dir``)."""

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
        """``data_dir/secret.key``, made (mode 0600) on the first start: every process and restart shares it.

        The key is written whole to a file of its own, then linked to its name: a process starting at the same
        time finds either no key (and links its own, or loses the race and reads the winner's) or a whole one,
        never an empty or half-written file. A key file shorter than 32 bytes is refused, naming it."""
        path = data_dir / "secret.key"
        if not path.exists():
            fd, name = tempfile.mkstemp(dir=data_dir, prefix=".secret.key.")  # mode 0600
            draft = Path(name)
            try:
                with os.fdopen(fd, "w") as file:
                    file.write(secrets.token_hex(MIN_SECRET_BYTES))
                with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                    path.hardlink_to(draft)
            finally:
                draft.unlink()
        try:
            secret = bytes.fromhex(path.read_text().strip())
        except ValueError:
            secret = b""
        if len(secret) < MIN_SECRET_BYTES:
            raise SystemExit(f"{path}: not a key of at least {MIN_SECRET_BYTES} bytes written as hex digits (the "
                             "application makes one on its first start; restore the file, or delete it to make a "
                             "new one, which signs everyone out)")
        return cls.from_secret(secret)


def private_dir(path: Path) -> Path:
    """``path``, made if need be (mode 0700), refused unless it is the current user's and no one else may write
    in it: the key, the sessions and the event log live there, and the default is under the shared temp folder."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = path.stat()
    if found.st_uid != os.getuid():
        raise SystemExit(f"{path} belongs to another user (uid {found.st_uid}): set MFA_WEBAPP_DATA to a folder "
                         "of your own")
    if found.st_mode & 0o022:
        raise SystemExit(f"{path} may be written by others (mode {oct(found.st_mode & 0o777)}): "
                         f"chmod go-w {path}, or set MFA_WEBAPP_DATA to a folder of your own")
    return path
