"""The fakes tests run the flow on: a clock you move and a transport that records."""

from __future__ import annotations

import threading
from collections import deque
from typing import Literal

from mfa_flow.errors import ConfigurationError
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown, SmsMessage

__all__ = ["FakeClock", "FakeTransport"]


class FakeClock:
    """Wall time in UNIX seconds that moves only when told (default start: 2026-01-01T00:00:00Z)."""

    def __init__(self, start: float = 1767225600.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> float:
        """Move forward; a negative total is refused (wall time in tests never goes back)."""
        delta = seconds + 60 * minutes + 3600 * hours
        if delta < 0:
            raise ConfigurationError(f"FakeClock.advance: cannot move back ({delta} s)")
        with self._lock:
            self._now += delta
            return self._now


class FakeTransport:
    """An SMS gateway that records every message, so tests can read the codes; never use in production.

    The flow wraps it in the local code provider, like any gateway.
    """

    def __init__(self) -> None:
        self.sent: list[SmsMessage] = []
        self._failures: deque[str] = deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeTransport(<{len(self.sent)} sent>)"

    def fail_next(self, outcome: Literal["rejected", "unknown"] = "rejected") -> None:
        """Make the next delivery fail: "rejected" is not recorded, "unknown" is (it may have arrived)."""
        if outcome not in ("rejected", "unknown"):
            raise ConfigurationError(
                f"FakeTransport.fail_next: outcome must be 'rejected' or 'unknown', got {outcome!r}")
        with self._lock:
            self._failures.append(outcome)

    def deliver(self, message: SmsMessage) -> None:
        with self._lock:
            outcome = self._failures.popleft() if self._failures else None
            if outcome != "rejected":
                self.sent.append(message)
        if outcome == "rejected":
            raise DeliveryRejected("FakeTransport: rejected as told by fail_next()")
        if outcome == "unknown":
            raise DeliveryUnknown("FakeTransport: outcome unknown as told by fail_next()")

    def last_code(self, member_id: str | None = None) -> str:
        """The code of the newest message (to ``member_id`` when given)."""
        for message in reversed(self.sent):
            if member_id is None or message.member_id == member_id:
                return message.code
        raise LookupError("FakeTransport: no message sent" + (f" to {member_id}" if member_id else ""))
