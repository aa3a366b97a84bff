"""mfa_flow.contrib.logs: EventLogger writes one record per event of a real flow, at INFO (member.locked and
delivery.failed at WARNING), its fields as ``mfa_*`` extras of plain values; a member in ``data`` is a summary
with a masked number, and no code, token or full number is in any message or extra."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from mfa_flow import Event, Member
from mfa_flow.contrib.logs import EventLogger, safe_data
from tests.helpers_operating import M_LINK, M_LOCKED, M_LOGIN, ORG, ORG_OPTIONAL, found_in, run_day

INFO, WARNING = logging.INFO, logging.WARNING
EXTRAS = ("mfa_event", "mfa_at", "mfa_organization_id", "mfa_member_id", "mfa_phone", "mfa_reason", "mfa_data")

#: run_day()'s events as (level, event, member), in order. The refused send names no member: it was unknown.
DAY = [
    (INFO, "otp.sent", M_LOGIN), (INFO, "otp.verified", M_LOGIN), (INFO, "member.updated", M_LOGIN),
    (INFO, "session.created", M_LOGIN),
    (INFO, "otp.refused", ""),
    (INFO, "phone.linked", M_LINK), (INFO, "member.updated", M_LINK), (INFO, "otp.sent", M_LINK),
    (INFO, "otp.sent", M_LOCKED), (INFO, "otp.failed", M_LOCKED), (INFO, "otp.failed", M_LOCKED),
    (INFO, "otp.failed", M_LOCKED), (WARNING, "member.locked", M_LOCKED), (INFO, "member.updated", M_LOCKED),
    (INFO, "session.step_up_required", M_LOGIN), (INFO, "otp.sent", M_LOGIN), (INFO, "otp.verified", M_LOGIN),
    (INFO, "session.step_up_completed", M_LOGIN),
    (WARNING, "delivery.failed", M_LOGIN),
    (INFO, "member.unlocked", M_LOCKED), (INFO, "member.updated", M_LOCKED),
    (INFO, "session.revoked", M_LOGIN),
]

def day_records(caplog: pytest.LogCaptureFixture, level: int = INFO, **kwargs: Any) -> list[logging.LogRecord]:
    caplog.set_level(level, logger="mfa_flow.events")
    run_day([EventLogger(**kwargs)])
    return [record for record in caplog.records if record.name == "mfa_flow.events"]


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in EXTRAS}


def test_one_record_per_event_in_order_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    records = day_records(caplog)
    assert [(r.levelno, r.mfa_event, r.mfa_member_id) for r in records] == DAY  # type: ignore[attr-defined]


def test_a_send_and_a_lock_read_as_lines_and_as_extras(caplog: pytest.LogCaptureFixture) -> None:
    records = day_records(caplog)
    sent, locked = records[0], records[12]
    assert sent.getMessage() == (f"mfa_flow otp.sent organization_id={ORG} member_id={M_LOGIN} "
                                 "phone=XXXXXXX0161 purpose=login automatic=True region=US")
    assert extras(sent) == {
        "mfa_event": "otp.sent", "mfa_at": 1767225600.0, "mfa_organization_id": ORG, "mfa_member_id": M_LOGIN,
        "mfa_phone": "XXXXXXX0161", "mfa_reason": None,
        "mfa_data": {"purpose": "login", "automatic": True, "locale": None, "region": "US"},
    }
    assert locked.getMessage() == (f"mfa_flow member.locked organization_id={ORG} member_id={M_LOCKED} "
                                   "phone=XXXXXXX0162 reason=user_lock_limit_reached locked_until=1767229200.0")
    assert extras(locked)["mfa_reason"] == "user_lock_limit_reached"
    assert extras(locked)["mfa_data"] == {"locked_until": 1767225600.0 + 3600}


def test_the_refused_send_carries_its_reason_and_no_member(caplog: pytest.LogCaptureFixture) -> None:
    refused = day_records(caplog)[4]
    assert refused.getMessage() == f"mfa_flow otp.refused organization_id={ORG} reason=member_not_found"
    assert extras(refused) == {
        "mfa_event": "otp.refused", "mfa_at": 1767225600.0, "mfa_organization_id": ORG, "mfa_member_id": "",
        "mfa_phone": "", "mfa_reason": "member_not_found", "mfa_data": {},
    }


def test_a_member_in_data_is_a_summary_with_a_masked_number(caplog: pytest.LogCaptureFixture) -> None:
    linked = day_records(caplog)[6]
    assert linked.mfa_event == "member.updated"  # type: ignore[attr-defined]
    assert extras(linked)["mfa_data"] == {"member": {
        "member_id": M_LINK, "organization_id": ORG_OPTIONAL, "status": "active", "mfa_enrolled": False,
        "mfa_phone_number": "XXXXXXX0163", "mfa_phone_number_verified": False, "default_mfa_method": "",
        "has_totp": False, "is_breakglass": False, "is_locked": False, "lock_expires_at": None,
    }}
    assert "@example.com" not in linked.getMessage()


def test_no_code_token_or_full_number_in_any_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(INFO, logger="mfa_flow.events")
    secrets = run_day([EventLogger()])
    records = [record for record in caplog.records if record.name == "mfa_flow.events"]
    assert len(records) == len(DAY)
    for record in records:
        shown = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
        written = json.dumps(extras(record))  # structured handlers can serialise every extra
        assert found_in(shown, secrets.private()) == [], shown
        assert found_in(written, secrets.private()) == [], written
        assert "@example.com" not in shown + written


def test_at_warning_only_locks_and_delivery_failures_are_written(caplog: pytest.LogCaptureFixture) -> None:
    records = day_records(caplog, WARNING)
    assert [(r.levelno, r.mfa_event) for r in records] == [  # type: ignore[attr-defined]
        (WARNING, "member.locked"), (WARNING, "delivery.failed")]


def test_levels_and_logger_are_the_callers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="audit.mfa")
    sink = EventLogger(logging.getLogger("audit.mfa"), logging.DEBUG, levels={"otp.failed": logging.ERROR})
    sink(Event("otp.failed", 1.0, ORG, M_LOGIN, "XXXXXXX0161", "otp_code_not_found", {"failures": 1}))
    sink(Event("member.locked", 2.0, ORG, M_LOGIN, "XXXXXXX0161", "user_lock_limit_reached"))
    assert [(r.name, r.levelno, r.mfa_event) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("audit.mfa", logging.ERROR, "otp.failed"), ("audit.mfa", logging.DEBUG, "member.locked")]


def test_data_that_is_not_plain_is_left_out() -> None:
    class Secretive:
        def __repr__(self) -> str:
            return "123456"

    member = Member("member-1", "org-1", email_address="someone@example.com", name="Some One",
                    mfa_phone_number="+14155550199", totp_registration_id="totp-1")
    data = safe_data({"factors": ("password", "otp"), "object": Secretive(), "nested": [Secretive()],
                      "count": 2, "member": member})
    assert data == {"factors": ["password", "otp"], "count": 2, "member": {
        "member_id": "member-1", "organization_id": "org-1", "status": "active", "mfa_enrolled": False,
        "mfa_phone_number": "XXXXXXX0199", "mfa_phone_number_verified": False, "default_mfa_method": "",
        "has_totp": True, "is_breakglass": False, "is_locked": False, "lock_expires_at": None,
    }}
