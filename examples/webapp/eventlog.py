"""The application's own SQLite file: an mfa_flow events sink that keeps every event, and the last TOTP step each
member used.

The admin page lists an organization's events, and the code page counts the member's recent ``otp.sent`` events
to show the resend cooldown and the sends left: the flow answers a send beyond them with ``too_many_requests`` but
has no call that tells how long to wait. The application logs its own ``totp.failed`` here too, to limit
authenticator guesses. Events carry masked phones and never a code or a token; their data is stored as
``mfa_flow.contrib.logs.safe_data`` gives it (plain values only), less ``member.updated``'s merged member: the
admin page reads members from the flow.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mfa_flow import Event
from mfa_flow.contrib.logs import safe_data

#: A member's events of one name since a time: the code page runs it on every render, through the index below.
TIMES_QUERY = ("SELECT at FROM events WHERE name = ? AND organization_id = ? AND member_id = ? AND at > ?"
               " ORDER BY at")


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
        self._lock = threading.RLock()  # reentrant: exclusive() holds it around times() and __call__
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at REAL NOT NULL, name TEXT NOT NULL,"
            " organization_id TEXT NOT NULL, member_id TEXT NOT NULL, phone TEXT NOT NULL, reason TEXT NOT NULL,"
            " data TEXT NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS events_of_member ON events (name, organization_id, member_id, at)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS totp_steps (organization_id TEXT NOT NULL, member_id TEXT NOT NULL,"
            " step INTEGER NOT NULL, PRIMARY KEY (organization_id, member_id))")

    def __call__(self, event: Event) -> None:
        data = {k: v for k, v in safe_data(event.data).items() if k != "member"}
        with self._lock:
            self._db.execute(
                "INSERT INTO events (at, name, organization_id, member_id, phone, reason, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.at, event.name, event.organization_id, event.member_id, event.phone, event.reason or "",
                 json.dumps(data, sort_keys=True)))

    def recent(self, organization_id: str, limit: int = 50) -> list[LoggedEvent]:
        """The organization's newest events: an administrator sees their own organization's only."""
        with self._lock:
            rows = self._db.execute("SELECT at, name, member_id, phone, reason, data FROM events"
                                    " WHERE organization_id = ? ORDER BY id DESC LIMIT ?",
                                    (organization_id, limit)).fetchall()
        return [LoggedEvent(*row) for row in rows]

    def times(self, name: str, organization_id: str, member_id: str, since: float) -> list[float]:
        """When the member's events of that name happened (oldest first), after ``since``."""
        with self._lock:
            rows = self._db.execute(TIMES_QUERY, (name, organization_id, member_id, since)).fetchall()
        return [row[0] for row in rows]

    def claim_totp_step(self, organization_id: str, member_id: str, step: int) -> bool:
        """Record ``step`` as the member's last accepted TOTP step; False if it is that step or an earlier one,
        so that a code is used once (RFC 6238 section 5.2). One statement: two processes cannot both claim it."""
        with self._lock:
            return self._db.execute(
                "INSERT INTO totp_steps VALUES (?, ?, ?) ON CONFLICT (organization_id, member_id)"
                " DO UPDATE SET step = excluded.step WHERE excluded.step > totp_steps.step",
                (organization_id, member_id, step)).rowcount == 1

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One step for every thread and process using the file: what is counted inside is still the count when
        what follows is written (the TOTP guesses: count, check, record)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
