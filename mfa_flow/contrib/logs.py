"""Write each event as one stdlib ``logging`` record: ``events=[EventLogger()]``.

The record's message reads as a line (``mfa_flow otp.sent organization_id=org-1 member_id=member-1
phone=XXXXXXX0123 purpose=login automatic=True``) and its ``extra`` carries the same fields for structured
handlers (JSON formatters, log shippers), each named ``mfa_*`` so they never collide with an application's own
extras. Phones are masked; no event carries a code or a token, and a ``Member`` in ``data`` is written as a
summary with its number masked and no e-mail address or name. See docs/operating.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mfa_flow.events import Event
from mfa_flow.phone import mask_phone
from mfa_flow.records import Member

__all__ = ["DEFAULT_LEVELS", "EventLogger", "safe_data"]

#: Events worth a look by someone on call; every other event logs at the logger's ``level``.
DEFAULT_LEVELS: Mapping[str, int] = {"member.locked": logging.WARNING, "delivery.failed": logging.WARNING}

Scalar = str | int | float | bool | None
Safe = Scalar | list[Scalar] | dict[str, Scalar]


def _member(member: Member) -> dict[str, Scalar]:
    """What an operator needs of a member: its state, never its e-mail address, name or full number."""
    return {
        "member_id": member.member_id,
        "organization_id": member.organization_id,
        "status": member.status,
        "mfa_enrolled": member.mfa_enrolled,
        "mfa_phone_number": mask_phone(member.mfa_phone_number),
        "mfa_phone_number_verified": member.mfa_phone_number_verified,
        "default_mfa_method": member.default_mfa_method,
        "has_totp": bool(member.totp_registration_id),
        "is_breakglass": member.is_breakglass,
        "is_locked": member.is_locked,
        "lock_expires_at": None if member.lock_expires_at is None else member.lock_expires_at.isoformat(),
    }


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)


def safe_data(data: Mapping[str, Any]) -> dict[str, Safe]:
    """An event's ``data`` as plain values: scalars, lists of scalars and a member's summary. Anything else
    is left out rather than written through its ``repr``."""
    safe: dict[str, Safe] = {}
    for key, value in data.items():
        if isinstance(value, Member):
            safe[key] = _member(value)
        elif _scalar(value):
            safe[key] = value
        elif isinstance(value, list | tuple) and all(_scalar(item) for item in value):
            safe[key] = list(value)
    return safe


def _shown(value: Safe) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


class EventLogger:
    """An event sink writing one record per event to ``logger`` (default ``mfa_flow.events``) at ``level``,
    or at ``levels[event.name]`` (default: ``member.locked`` and ``delivery.failed`` at WARNING)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO, *,
                 levels: Mapping[str, int] = DEFAULT_LEVELS) -> None:
        self.logger = logging.getLogger("mfa_flow.events") if logger is None else logger
        self.level = level
        self.levels = dict(levels)

    def __repr__(self) -> str:
        return f"EventLogger({self.logger.name!r}, {logging.getLevelName(self.level)})"

    def __call__(self, event: Event) -> None:
        level = self.levels.get(event.name, self.level)
        if not self.logger.isEnabledFor(level):
            return
        data = safe_data(event.data)
        fields = [("organization_id", event.organization_id), ("member_id", event.member_id), ("phone", event.phone),
                  ("reason", event.reason), *data.items()]
        self.logger.log(level, "mfa_flow %s%s", event.name,
                        "".join(f" {key}={_shown(value)}" for key, value in fields if value not in ("", None)),
                        extra={"mfa_event": event.name, "mfa_at": event.at,
                               "mfa_organization_id": event.organization_id, "mfa_member_id": event.member_id,
                               "mfa_phone": event.phone, "mfa_reason": event.reason, "mfa_data": data})
