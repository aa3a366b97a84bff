"""mfa_flow.contrib.opentelemetry: EventMetrics counts a real flow's decisions, read back through the SDK's
in-memory reader; attributes come from fixed sets, so no member id, phone, code or token becomes one; the API
is loaded only when a sink is made, and its absence is a ConfigurationError naming the extra."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Event
from mfa_flow.contrib.opentelemetry import INSTRUMENTS, EventMetrics
from mfa_flow.events import EVENT_NAMES
from tests.emulator_server import require
from tests.helpers_operating import ORG, ORG_OPTIONAL, found_in, run_day
from tests.helpers_process import python_output

Points = dict[tuple[str, frozenset[tuple[str, Any]]], int]

LOGIN = {"mfa_flow.otp.purpose": "login", "mfa_flow.otp.automatic": True}
STEP_UP = {"mfa_flow.otp.purpose": "step_up", "mfa_flow.otp.automatic": True}
LINK = {"mfa_flow.otp.purpose": "link", "mfa_flow.otp.automatic": False}
US = {"mfa_flow.phone.region": "US"}  # every number of the day is a US one; the send events carry the region

#: What run_day() counts, point by point: (instrument, attributes) → value. member.updated is not counted.
DAY: list[tuple[str, dict[str, Any], int]] = [
    ("mfa_flow.otp.sent", {**LOGIN, **US}, 2),  # two logins' automatic codes
    ("mfa_flow.otp.sent", {**LINK, **US}, 1),
    ("mfa_flow.otp.sent", {**STEP_UP, **US}, 1),
    ("mfa_flow.otp.verified", {"mfa_flow.otp.purpose": "login"}, 1),
    ("mfa_flow.otp.verified", {"mfa_flow.otp.purpose": "step_up"}, 1),
    ("mfa_flow.otp.refused", {"error.type": "member_not_found"}, 1),
    ("mfa_flow.otp.failed", {"error.type": "otp_code_not_found"}, 3),  # the third reached the threshold
    ("mfa_flow.member.locked", {"error.type": "user_lock_limit_reached"}, 1),
    ("mfa_flow.member.unlocked", {"mfa_flow.member.was_locked": True}, 1),
    ("mfa_flow.phone.linked", {"mfa_flow.phone.verified": False}, 1),
    ("mfa_flow.session.created", {}, 1),
    ("mfa_flow.session.step_up_required", {}, 1),
    ("mfa_flow.session.step_up_completed", {"mfa_flow.session.factor": "otp"}, 1),
    ("mfa_flow.delivery.failed", {"error.type": "rejected", "mfa_flow.otp.purpose": "step_up",
                                  "mfa_flow.otp.automatic": False}, 1),
    ("mfa_flow.session.revoked", {"mfa_flow.session.revoked_by": "session_token"}, 1),
]
#: The organization each of DAY's points happened in (the link is in the optional organization).
DAY_ORGS = {("mfa_flow.otp.sent", "link"): ORG_OPTIONAL, ("mfa_flow.phone.linked", None): ORG_OPTIONAL}


@pytest.fixture
def reader() -> Any:
    export = require("opentelemetry.sdk.metrics.export")
    return export.InMemoryMetricReader()


@pytest.fixture
def meter(reader: Any) -> Iterator[Any]:
    sdk = require("opentelemetry.sdk.metrics")
    provider = sdk.MeterProvider(metric_readers=[reader])
    yield provider.get_meter("mfa_flow")
    provider.shutdown()


def points(reader: Any) -> Points:
    """Every exported data point as (instrument, attributes) → value, checking each is a monotonic sum."""
    found: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.data.is_monotonic, metric.name
                for point in metric.data.data_points:
                    found[metric.name, frozenset(point.attributes.items())] = point.value
    return found


def expected(rows: list[tuple[str, dict[str, Any], int]]) -> Points:
    return {(name, frozenset(attributes.items())): value for name, attributes, value in rows}


def test_a_day_is_counted_point_by_point(meter: Any, reader: Any) -> None:
    run_day([EventMetrics(meter)])
    assert points(reader) == expected(DAY)


def test_no_member_id_phone_code_or_token_reaches_the_metrics(meter: Any, reader: Any) -> None:
    secrets = run_day([EventMetrics(meter)])
    exported = reader.get_metrics_data().to_json()
    assert "mfa_flow.otp.sent" in exported
    assert found_in(exported, secrets.identifying()) == []
    for _, attributes in points(reader):
        for key, value in attributes:
            assert found_in(f"{key}={value}", secrets.identifying()) == []


def test_organization_is_an_attribute_only_when_asked(meter: Any, reader: Any) -> None:
    run_day([EventMetrics(meter, include_organization=True)])

    def organization(name: str, attributes: dict[str, Any]) -> str:
        return DAY_ORGS.get((name, attributes.get("mfa_flow.otp.purpose")), ORG)

    assert points(reader) == expected([
        (name, {**attributes, "mfa_flow.organization.id": organization(name, attributes)}, value)
        for name, attributes, value in DAY
    ])


def test_instruments_are_named_after_the_events_with_their_units(meter: Any, reader: Any) -> None:
    run_day([EventMetrics(meter)])
    data = reader.get_metrics_data()
    metrics = {m.name: m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert set(metrics) == {f"mfa_flow.{name}" for name in INSTRUMENTS}
    assert set(INSTRUMENTS) == EVENT_NAMES - {"member.updated"}
    for name, (unit, description) in INSTRUMENTS.items():
        assert (metrics[f"mfa_flow.{name}"].unit, metrics[f"mfa_flow.{name}"].description) == (unit, description)
        assert unit[0] + unit[-1] == "{}"


def test_member_updated_is_not_counted(meter: Any, reader: Any) -> None:
    sink = EventMetrics(meter)
    sink(Event("member.updated", 0.0, ORG, "member-1", "XXXXXXX0123"))
    assert points(reader) == {}


def test_attribute_values_outside_their_fixed_sets_read_other(meter: Any, reader: Any) -> None:
    """A reason Stytch invented, a purpose or selector the sink does not know, free text where a region goes:
    none becomes an attribute value of its own."""
    sink = EventMetrics(meter)
    sink(Event("otp.refused", 0.0, ORG, "member-1", "", "some_new_stytch_error",
               {"purpose": "member-1", "automatic": "yes", "region": "+14155550123"}))
    sink(Event("session.revoked", 0.0, ORG, "member-1", data={"selector": "member-session-1"}))
    sink(Event("session.step_up_completed", 0.0, ORG, "member-1", data={"factor": "sms-code-123456"}))
    assert points(reader) == expected([
        ("mfa_flow.otp.refused", {"error.type": "other", "mfa_flow.otp.purpose": "other",
                                  "mfa_flow.otp.automatic": False}, 1),
        ("mfa_flow.session.revoked", {"mfa_flow.session.revoked_by": "other"}, 1),
        ("mfa_flow.session.step_up_completed", {"mfa_flow.session.factor": "other"}, 1),
    ])


def test_a_send_event_carrying_its_region_is_counted_by_region(meter: Any, reader: Any) -> None:
    sink = EventMetrics(meter)
    for region in ("US", "CA", "CA"):
        sink(Event("otp.sent", 0.0, ORG, "member-1", "XXXXXXX0123", data={"purpose": "login", "region": region}))
    assert points(reader) == expected([
        ("mfa_flow.otp.sent", {"mfa_flow.otp.purpose": "login", "mfa_flow.phone.region": "US"}, 1),
        ("mfa_flow.otp.sent", {"mfa_flow.otp.purpose": "login", "mfa_flow.phone.region": "CA"}, 2),
    ])


def test_missing_api_is_a_configuration_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'mfa_flow\[opentelemetry\]'") as caught:
        EventMetrics()
    assert caught.value.error_type == "invalid_argument"


def test_importing_mfa_flow_does_not_import_opentelemetry() -> None:
    out = python_output("import sys, mfa_flow, mfa_flow.contrib, mfa_flow.contrib.logs; "
                        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))")
    assert out == "[]"


def test_default_meter_is_the_global_providers_mfa_flow_meter() -> None:
    """Without a meter the sink counts on the application's global MeterProvider, as scope mfa_flow and this
    version (a subprocess: the global provider can be set once per process)."""
    require("opentelemetry.sdk.metrics")
    out = python_output(
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "from mfa_flow import Event, __version__\n"
        "from mfa_flow.contrib.opentelemetry import EventMetrics\n"
        "reader = InMemoryMetricReader()\n"
        "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "EventMetrics()(Event('member.locked', 0.0, 'org-1', 'member-1', '', 'user_lock_limit_reached'))\n"
        "scope = reader.get_metrics_data().resource_metrics[0].scope_metrics[0]\n"
        "point = scope.metrics[0].data.data_points[0]\n"
        "print(scope.scope.name, scope.scope.version == __version__, scope.metrics[0].name, point.value)\n"
    )
    assert out == "mfa_flow True mfa_flow.member.locked 1"
