"""Events the flow emits after each committed decision, and the context handed to risk hooks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from mfa_flow.phone import mask_phone
from mfa_flow.records import Member, Organization

__all__ = ["EVENT_NAMES", "Event", "EventSink", "SendContext", "emit"]

logger = logging.getLogger("mfa_flow")

EVENT_NAMES = frozenset({
    "otp.sent", "otp.refused", "otp.verified", "otp.failed", "member.locked", "member.updated",
    "phone.linked", "session.created", "session.step_up_required", "session.step_up_completed",
    "delivery.failed", "session.revoked", "member.unlocked",
})


@attrs.frozen(slots=True)
class Event:
    """One decision. ``phone`` is masked; ``data`` never holds a code or a token."""

    name: str
    at: float
    organization_id: str
    member_id: str
    phone: str = ""
    reason: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)


EventSink = Callable[[Event], None]


@attrs.frozen(slots=True, kw_only=True)
class SendContext:
    """What a ``before_send`` hook sees; it refuses the send by raising an ``MfaError``."""

    organization: Organization
    member: Member
    phone_number: str = attrs.field(repr=mask_phone)
    region: str | None
    locale: str | None
    purpose: str
    automatic: bool
    at: float


def emit(sinks: Iterable[EventSink], events: Iterable[Event]) -> None:
    """Deliver events in order; a failing callback is logged and swallowed (the change is committed)."""
    for event in events:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("event %s org=%s member=%s phone=%s reason=%s", event.name,
                         event.organization_id, event.member_id, event.phone, event.reason)
        for sink in sinks:
            try:
                sink(event)
            except Exception:
                logger.exception("event callback %r failed on %s", sink, event.name)

