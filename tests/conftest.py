"""Shared fixtures: a fake clock, a recording transport, an events list, a flow factory and a setup helper."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import settings

from mfa_flow import Event, Member, MfaFlow, Organization, Policy
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import MEMBER as MEMBER_ID
from tests.helpers_rules import ORG as ORG_ID
from tests.helpers_rules import ORG_SLUG, PHONE, FlowFactory
from tests.helpers_rules import Setup as SetupMember

pytest_plugins = ["tests.redis_server", "tests.emulator_server"]

settings.register_profile("ci", max_examples=200, stateful_step_count=30, deadline=None)
settings.register_profile("dev", max_examples=25, stateful_step_count=10, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def flow(clock: FakeClock, transport: FakeTransport, events: list[Event]) -> FlowFactory:
    """``flow(**policy_kwargs)`` builds an MfaFlow on the shared clock, transport and events list.

    ``before_send=`` and ``extra_events=`` are passed through; every other keyword goes to ``Policy``.
    """

    def make(
        *,
        before_send: Iterable[Callable[..., None]] = (),
        extra_events: Iterable[Callable[[Event], None]] = (),
        **policy_kwargs: Any,
    ) -> MfaFlow:
        return MfaFlow(
            clock=clock,
            transport=transport,
            events=[*extra_events, events.append],
            policy=Policy(**policy_kwargs),
            before_send=tuple(before_send),
        )

    return make


@pytest.fixture
def setup_member() -> SetupMember:
    """``setup_member(flow, member_id=MEMBER_ID, *, organization_id=ORG_ID, org=None, **member_fields)``.

    Puts the organization (``org`` = Organization keyword arguments; by default ``REQUIRED_FOR_ALL`` with slug
    ``acme``) the first time an organization id is seen on a flow, or whenever ``org`` is given, then puts the
    member. Member defaults: a verified linked phone ``PHONE`` and an e-mail address.
    """
    seen: set[tuple[int, str]] = set()

    def setup(
        flow: MfaFlow,
        member_id: str = MEMBER_ID,
        *,
        organization_id: str = ORG_ID,
        org: dict[str, Any] | None = None,
        **member_fields: Any,
    ) -> Member:
        key = (id(flow), organization_id)
        if org is not None or key not in seen:
            org_kwargs: dict[str, Any] = {
                "organization_slug": ORG_SLUG if organization_id == ORG_ID else f"slug-{organization_id}",
                "mfa_policy": "REQUIRED_FOR_ALL",
            }
            org_kwargs.update(org or {})
            flow.directory.put_organization(Organization(organization_id, **org_kwargs))
            seen.add(key)
        fields: dict[str, Any] = {
            "email_address": f"{member_id}@example.com",
            "mfa_phone_number": PHONE,
            "mfa_phone_number_verified": True,
        }
        fields.update(member_fields)
        member = Member(member_id, organization_id, **fields)
        flow.directory.put_member(member)
        return member

    return setup


@pytest.fixture
def member_flow(flow: FlowFactory, setup_member: SetupMember) -> FlowFactory:
    """``member_flow(**flow_kwargs)``: ``flow(**flow_kwargs)`` with the default member (``setup_member``) put in."""

    def make(**flow_kwargs: Any) -> MfaFlow:
        mfa = flow(**flow_kwargs)
        setup_member(mfa)
        return mfa

    return make


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff pauses the HTTP gateways and Stytch providers took, recorded instead of slept."""
    from mfa_flow.transports import _http as http_core  # here: httpx only for the tests that send

    taken: list[float] = []

    async def asleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(http_core, "sleep", taken.append)
    monkeypatch.setattr(http_core, "async_sleep", asleep)
    return taken
