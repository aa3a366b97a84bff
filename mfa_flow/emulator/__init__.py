"""A local server that answers as Stytch's B2B SMS OTP API does, with mfa_flow's rules behind it.

Run it with ``mfa-flow serve``, or embed it with :func:`create_app`; the official ``stytch`` SDK talks to
it as to Stytch (``B2BClient(project_id, secret, environment="http://127.0.0.1:PORT")``). Needs the
``emulator`` extra: ``python3 -m pip install 'mfa_flow[emulator]'``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401 - only to say which extra is missing
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError("mfa_flow.emulator needs the emulator extra: python3 -m pip install 'mfa_flow[emulator]'",
                      name=exc.name) from exc

from mfa_flow.emulator.app import create_app
from mfa_flow.emulator.service import Emulator, MessageLog, OffsetClock

__all__ = ["Emulator", "MessageLog", "OffsetClock", "create_app"]
