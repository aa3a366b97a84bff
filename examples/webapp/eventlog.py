"""An mfa_flow events sink that keeps every event in the application's own SQLite file.

The admin page lists them, and the code page counts the member's recent ``otp.sent`` events to show the resend
cooldown and the sends left: the flow answers a send beyond them with ``too_many_requests`` but has no call that
tells how long to wait. The application logs its own ``totp.failed`` here too, to limit authenticator guesses.
Events carry masked phones and never a code or a token, so they are stored as they are (but for
``member.updated``'s merged member: the admin page reads members from the flow).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from mfa_flow import Event


@dataclass(frozen=True)
class LoggedEvent:
    at: float
    name: str
    member_id: str
    phone: str
    reason: str
    data: str


class EventLog:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at REAL NOT NULL, name TEXT NOT NULL,"
            " organization_id TEXT NOT NULL, member_id TEXT NOT NULL, phone TEXT NOT NULL, reason TEXT NOT NULL,"
            " data TEXT NOT NULL)")

    def __call__(self, event: Event) -> None:
        data = {k: v for k, v in event.data.items() if k != "member"}
        with self._lock:
            self._db.execute(
                "INSERT INTO events (at, name, organization_id, member_id, phone, reason, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.at, event.name, event.organization_id, event.member_id, event.phone, event.reason or "",
                 json.dumps(data, sort_keys=True, default=str)))

    def recent(self, limit: int = 50) -> list[LoggedEvent]:
        with self._lock:
            rows = self._db.execute("SELECT at, name, member_id, phone, reason, data FROM events"
                                    " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [LoggedEvent(*row) for row in rows]

    def times(self, name: str, organization_id: str, member_id: str, since: float) -> list[float]:
        """When the member's events of that name happened (oldest first), after ``since``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at FROM events WHERE name = ? AND organization_id = ? AND member_id = ? AND at > ?"
                " ORDER BY at", (name, organization_id, member_id, since)).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self._db.close()
