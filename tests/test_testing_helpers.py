"""Spec §9: FakeClock and FakeTransport, the helpers tests read codes and move time with."""

from __future__ import annotations

import pytest

from mfa_flow import MfaError
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown, SmsMessage


def test_fake_clock_starts_at_2026_and_moves_only_forward() -> None:
    clock = FakeClock()
    assert clock.now() == 1767225600.0
    assert clock.advance(30) == 1767225630.0
    assert clock.advance(minutes=2, hours=1) == 1767225630.0 + 120 + 3600
    assert FakeClock(10.0).now() == 10.0
    for negative in ({"seconds": -1}, {"minutes": -1}, {"hours": 1, "seconds": -3601}):
        with pytest.raises(ValueError, match="cannot move back") as caught:
            clock.advance(**negative)  # type: ignore[arg-type]
        assert isinstance(caught.value, MfaError)
    assert clock.now() == 1767225630.0 + 120 + 3600


def message(code: str) -> SmsMessage:
    return SmsMessage("+14155550123", code, None, "member-test-1", "organization-test-1")


def test_fake_transport_records_and_fails_as_told() -> None:
    transport = FakeTransport()
    transport.deliver(message("111111"))
    transport.fail_next("rejected")
    with pytest.raises(DeliveryRejected):
        transport.deliver(message("222222"))
    transport.fail_next("unknown")
    with pytest.raises(DeliveryUnknown):
        transport.deliver(message("333333"))
    transport.deliver(message("444444"))
    assert [m.code for m in transport.sent] == ["111111", "333333", "444444"]  # rejected: never recorded
    assert transport.last_code("member-test-1") == "444444"
    assert "444444" not in repr(transport.sent[-1])  # the code is hidden from repr
    with pytest.raises(ValueError, match="rejected"):
        transport.fail_next("lost")  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        transport.last_code("member-test-2")
