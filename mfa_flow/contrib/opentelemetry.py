"""Count the flow's decisions as OpenTelemetry metrics: ``events=[EventMetrics()]``.

Uses ``opentelemetry-api`` only (``pip install 'mfa_flow[opentelemetry]'``); the SDK, the exporter and the
``MeterProvider`` are the application's. Each event ``x.y`` adds 1 to the counter ``mfa_flow.x.y``
(``member.updated`` is not counted). Attributes are low-cardinality by construction: every value comes from a
fixed set (anything else reads ``other``), and no member id, phone number, code or token is ever one of them;
the organization id is added only with ``include_organization=True``. See docs/operating.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from mfa_flow._version import __version__
from mfa_flow.errors import ConfigurationError, ErrorType
from mfa_flow.events import Event

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Meter

__all__ = ["INSTRUMENTS", "EventMetrics"]

#: event name → (unit, description); the instrument is named ``mfa_flow.<event name>``.
INSTRUMENTS: Mapping[str, tuple[str, str]] = {
    "otp.sent": ("{message}", "One-time codes handed to the SMS gateway or to Stytch"),
    "otp.refused": ("{request}", "Sends (and the calls that would have sent) refused, by error.type"),
    "otp.verified": ("{code}", "Codes accepted"),
    "otp.failed": ("{attempt}", "Authenticate attempts refused, by error.type"),
    "member.locked": ("{lock}", "Members locked after too many wrong codes"),
    "member.unlocked": ("{member}", "Members unlocked (or their failure count cleared) by unlock_member"),
    "phone.linked": ("{phone}", "Phone numbers linked to members"),
    "session.created": ("{session}", "Sessions issued"),
    "session.step_up_required": ("{session}", "Sessions found to need a step-up after inactivity"),
    "session.step_up_completed": ("{session}", "Step-ups completed"),
    "session.revoked": ("{session}", "Sessions ended by revoke_session or an inactive member"),
    "delivery.failed": ("{message}", "Deliveries the gateway rejected or could not confirm"),
}

PURPOSE = "mfa_flow.otp.purpose"
AUTOMATIC = "mfa_flow.otp.automatic"
REGION = "mfa_flow.phone.region"
ORGANIZATION = "mfa_flow.organization.id"
ERROR_TYPE = "error.type"
FACTOR = "mfa_flow.session.factor"
SELECTOR = "mfa_flow.session.revoked_by"
WAS_LOCKED = "mfa_flow.member.was_locked"
VERIFIED = "mfa_flow.phone.verified"

OTHER = "other"
_REASONS = frozenset(get_args(ErrorType)) | {"rejected", "unknown"}
_PURPOSES = frozenset({"login", "step_up", "link"})
_FACTORS = frozenset({"otp", "totp", "recovery_code"})
_SELECTORS = frozenset({"member_session_id", "session_token", "session_jwt", "member_id", "inactive_member"})
_REGION = re.compile(r"[A-Z]{2}")

Attributes = dict[str, str | bool]


def _one_of(value: object, allowed: frozenset[str]) -> str:
    """A value from the fixed set, else ``other``: an attribute never carries free text."""
    return value if isinstance(value, str) and value in allowed else OTHER


def _send(data: Mapping[str, Any], attributes: Attributes) -> None:
    if "purpose" in data:
        attributes[PURPOSE] = _one_of(data["purpose"], _PURPOSES)
    if "automatic" in data:
        attributes[AUTOMATIC] = data["automatic"] is True
    region = data.get("region")
    if isinstance(region, str) and _REGION.fullmatch(region):
        attributes[REGION] = region


def _flag(attribute: str, key: str) -> Callable[[Mapping[str, Any], Attributes], None]:
    def read(data: Mapping[str, Any], attributes: Attributes) -> None:
        if key in data:
            attributes[attribute] = data[key] is True
    return read


def _chosen(attribute: str, key: str, allowed: frozenset[str]) -> Callable[[Mapping[str, Any], Attributes], None]:
    def read(data: Mapping[str, Any], attributes: Attributes) -> None:
        if key in data:
            attributes[attribute] = _one_of(data[key], allowed)
    return read


#: What each event's ``data`` adds to its attributes (the ``reason`` is ``error.type`` wherever it is set).
_READERS: Mapping[str, Callable[[Mapping[str, Any], Attributes], None]] = {
    "otp.sent": _send,
    "otp.refused": _send,
    "delivery.failed": _send,
    "otp.verified": _chosen(PURPOSE, "purpose", _PURPOSES),
    "session.step_up_completed": _chosen(FACTOR, "factor", _FACTORS),
    "session.revoked": _chosen(SELECTOR, "selector", _SELECTORS),
    "member.unlocked": _flag(WAS_LOCKED, "was_locked"),
    "phone.linked": _flag(VERIFIED, "verified"),
}


def _default_meter() -> Meter:
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ConfigurationError(
            "mfa_flow.contrib.opentelemetry needs the OpenTelemetry API: pip install 'mfa_flow[opentelemetry]'"
        ) from None
    return metrics.get_meter("mfa_flow", __version__)


class EventMetrics:
    """An event sink: ``MfaFlow(events=[EventMetrics()])`` counts every decision on ``meter`` (by default the
    global provider's meter ``mfa_flow``). Thread-safe, as OpenTelemetry counters are."""

    def __init__(self, meter: Meter | None = None, *, include_organization: bool = False) -> None:
        meter = _default_meter() if meter is None else meter
        self._include_organization = include_organization
        self._counters: dict[str, Counter] = {
            name: meter.create_counter(f"mfa_flow.{name}", unit=unit, description=description)
            for name, (unit, description) in INSTRUMENTS.items()
        }

    def __repr__(self) -> str:
        return f"EventMetrics(include_organization={self._include_organization})"

    def attributes(self, event: Event) -> Attributes:
        """The attributes ``event`` is counted under."""
        attributes: Attributes = {}
        if event.reason is not None:
            attributes[ERROR_TYPE] = _one_of(event.reason, _REASONS)
        reader = _READERS.get(event.name)
        if reader is not None:
            reader(event.data, attributes)
        if self._include_organization and event.organization_id:
            attributes[ORGANIZATION] = event.organization_id
        return attributes

    def __call__(self, event: Event) -> None:
        counter = self._counters.get(event.name)
        if counter is not None:
            counter.add(1, self.attributes(event))
