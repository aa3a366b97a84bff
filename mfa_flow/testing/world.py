"""MfaWorld: a flow on a fake clock and a recording transport, so that a test of a policy reads like the policy.

    world = MfaWorld(Policy(inactivity_timeout=1800))
    alice = world.member(phone=True)            # in a REQUIRED_FOR_ALL organization made on the way
    world.login(alice, via="sso")               # the automatic SMS goes out
    world.verify(alice)                         # the newest code, with alice's IST: a session
    world.idle(minutes=31)
    assert world.check(alice).step_up_required

Several worlds never share state. ``flow_factory`` builds the flow under test (any object with the public
methods of ``MfaFlow``), so a policy can be checked against a flow built some other way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs

from mfa_flow.errors import ConfigurationError
from mfa_flow.events import Event, EventSink
from mfa_flow.files import Fixtures, load_policy_file
from mfa_flow.flow import MfaFlow
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticateResult, PrimaryAuthResult, SendResult, SessionCheck
from mfa_flow.testing.fakes import FakeClock, FakeTransport

__all__ = ["Events", "FlowFactory", "MfaWorld", "Step", "fictional_numbers"]


class FlowFactory(Protocol):
    def __call__(self, policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                 events: list[EventSink]) -> Any: ...


def default_flow(policy: Policy, *, clock: FakeClock, transport: FakeTransport, events: list[EventSink]) -> MfaFlow:
    """The flow ``MfaWorld`` runs when given no factory: the policy's own, on the in-memory defaults."""
    return MfaFlow(policy=policy, clock=clock, transport=transport, events=events)


class Events(list[Event]):
    """Every event the world's flow emitted, in order."""

    def named(self, name: str) -> list[Event]:
        return [event for event in self if event.name == name]


@attrs.define
class Step:
    """One call the world made: what, for whom, with which arguments, when, and what it answered or raised."""

    action: str
    member_id: str | None
    args: dict[str, Any]
    at: float
    result: Any = None
    error: BaseException | None = None


def fictional_numbers() -> Iterator[str]:
    """Distinct numbers from ranges reserved for fiction: +1 415/212/312/617 555 01xx."""
    for area in ("415", "212", "312", "617", "303", "206"):
        for line in range(100, 200):
            yield f"+1{area}555{line:04d}"


MemberRef = Member | str


class MfaWorld:
    """A flow on the in-memory defaults with a ``FakeClock`` (``.clock``) and a ``FakeTransport`` (``.sms``).

    ``.events`` holds every event, ``.steps`` every call made through the helpers below. A member may be
    given as its record or its id; each keeps its current IST (from its last login) and session (from its
    last successful verify), which ``verify`` and ``send`` use when no token is given.
    """

    def __init__(self, policy: Policy | None = None, *, flow_factory: FlowFactory | None = None) -> None:
        self.policy = policy if policy is not None else Policy()
        self.clock = FakeClock()
        self.sms = FakeTransport()
        self.events = Events()
        self.flow: Any = (flow_factory or default_flow)(self.policy, clock=self.clock, transport=self.sms,
                                                         events=[self.events.append])
        self.steps: list[Step] = []
        self.ists: dict[str, str] = {}
        self.sessions: dict[str, str] = {}
        self._members: dict[str, Member] = {}
        self._orgs: dict[str, Organization] = {}
        self._numbers = fictional_numbers()
        self._taken: set[str] = set()

    @classmethod
    def from_toml(cls, path: str | Path, *, flow_factory: FlowFactory | None = None) -> MfaWorld:
        """A world with the policy file's ``[policy]`` and its ``[[organizations]]`` / ``[[members]]``."""
        loaded = load_policy_file(path)
        world = cls(loaded.policy, flow_factory=flow_factory)
        world.load(loaded.fixtures)
        return world

    def __repr__(self) -> str:
        return f"MfaWorld(<{len(self._orgs)} organizations, {len(self._members)} members, {len(self.steps)} steps>)"

    # --- records ------------------------------------------------------------------------------------------

    def load(self, fixtures: Fixtures) -> None:
        """Put a file's (or a universe's) records in the flow's directory."""
        for org in fixtures.organizations:
            self.load_organization(org)
        for member in fixtures.members:
            self.load_member(member)

    def organization(self, **fields: Any) -> Organization:
        """Create and store an organization (``mfa_policy`` defaults to ``REQUIRED_FOR_ALL``)."""
        fields.setdefault("organization_id", f"organization-test-{len(self._orgs) + 1}")
        fields.setdefault("mfa_policy", "REQUIRED_FOR_ALL")
        org_id = fields.pop("organization_id")
        return self.load_organization(Organization(org_id, **fields))

    def member(self, organization: Organization | str | None = None, *, phone: bool | str = False,
               verified: bool = True, **fields: Any) -> Member:
        """Create and store a member of ``organization`` (the newest one, made if there is none).

        ``phone=True`` links a distinct fictional number, a string links that number, ``False`` none;
        ``verified`` says whether a linked number is verified."""
        if organization is None:
            org = next(reversed(self._orgs.values())) if self._orgs else self.organization()
        else:
            org = self._orgs[organization] if isinstance(organization, str) else organization
        number = self._next_number() if phone is True else (phone or "")
        fields.setdefault("member_id", f"member-test-{len(self._members) + 1}")
        member_id = fields.pop("member_id")
        fields.setdefault("mfa_phone_number", number)
        fields.setdefault("mfa_phone_number_verified", bool(number) and verified)
        return self.load_member(Member(member_id, org.organization_id, **fields))

    def _next_number(self) -> str:
        number = next(n for n in self._numbers if n not in self._taken)
        self._taken.add(number)
        return number

    def load_organization(self, org: Organization) -> Organization:
        """Put an organization record, as it is, in the flow's directory."""
        self._writable_directory().put_organization(org)
        self._orgs[org.organization_id] = org
        return org

    def load_member(self, member: Member) -> Member:
        """Put a member record, as it is, in the flow's directory."""
        self._writable_directory().put_member(member)
        self._members[member.member_id] = member
        if member.mfa_phone_number:
            self._taken.add(member.mfa_phone_number)
        return member

    def _writable_directory(self) -> Any:
        directory = getattr(self.flow, "directory", None)
        if not all(callable(getattr(directory, name, None)) for name in ("put_organization", "put_member")):
            raise ConfigurationError("MfaWorld: the flow's directory cannot be written (it needs put_organization "
                                     "and put_member); give the flow_factory's flow a MemoryDirectory")
        return directory

    def _record(self, member: MemberRef) -> Member:
        member_id = member if isinstance(member, str) else member.member_id
        try:
            return self._members[member_id]
        except KeyError:
            raise LookupError(f"MfaWorld: no member {member_id!r} in this world") from None

    # --- calls ----------------------------------------------------------------------------------------------

    def _call(self, action: str, member: Member | None, call: Callable[[], Any], **args: Any) -> Any:
        step = Step(action, None if member is None else member.member_id, args, self.clock.now())
        self.steps.append(step)
        try:
            step.result = call()
        except BaseException as exc:
            step.error = exc
            raise
        return step.result

    def login(self, member: MemberRef, via: str = "password") -> PrimaryAuthResult:
        """Primary authentication by ``via``: keeps the IST (or the session when MFA is not owed)."""
        m = self._record(member)
        result: PrimaryAuthResult = self._call(
            "login", m, lambda: self.flow.authenticate_primary(m.organization_id, m.member_id, via), via=via)
        if result.session_token:
            self.sessions[m.member_id] = result.session_token
            self.ists.pop(m.member_id, None)
        elif result.intermediate_session_token:
            self.ists[m.member_id] = result.intermediate_session_token
        return result

    def code(self, member: MemberRef) -> str:
        """The newest code sent to ``member``."""
        return self.sms.last_code(self._record(member).member_id)

    def token(self, member: MemberRef) -> dict[str, str]:
        """The member's current token as a keyword argument: its IST if it has one, else its session."""
        member_id = self._record(member).member_id
        if member_id in self.ists:
            return {"intermediate_session_token": self.ists[member_id]}
        if member_id in self.sessions:
            return {"session_token": self.sessions[member_id]}
        return {}

    def verify(self, member: MemberRef, code: str | None = None, *,
               token: dict[str, str] | None = None) -> AuthenticateResult:
        """Authenticate ``code`` (the newest one when None) with ``token`` (the member's current one when None)."""
        m = self._record(member)
        used = self.code(m) if code is None else code
        passed = self.token(m) if token is None else token
        result: AuthenticateResult = self._call(
            "verify", m, lambda: self.flow.authenticate_sms_otp(m.organization_id, m.member_id, used, **passed),
            code=code, token=sorted(passed))
        if "intermediate_session_token" in passed:
            self.ists.pop(m.member_id, None)
        self.sessions[m.member_id] = result.session_token
        return result

    def send(self, member: MemberRef, number: str | None = None, *,
             token: dict[str, str] | None = None) -> SendResult:
        """The send endpoint, with ``token`` (the member's current one when None; ``{}`` for none)."""
        m = self._record(member)
        passed = self.token(m) if token is None else token
        result: SendResult = self._call(
            "send", m, lambda: self.flow.send_sms_otp(m.organization_id, m.member_id, mfa_phone_number=number,
                                                      **passed), number=number, token=sorted(passed))
        return result

    def check(self, member: MemberRef) -> SessionCheck:
        """``authenticate_session`` on the member's session."""
        m = self._record(member)
        session = self.sessions.get(m.member_id)
        if session is None:
            raise LookupError(f"MfaWorld: {m.member_id} has no session")
        result: SessionCheck = self._call("check_session", m,
                                          lambda: self.flow.authenticate_session(session_token=session))
        return result

    def record_factor(self, member: MemberRef, factor_type: str = "totp") -> AuthenticateResult:
        """A factor the application verified itself, with the member's current token."""
        m = self._record(member)
        passed = self.token(m)
        result: AuthenticateResult = self._call(
            "record_factor", m, lambda: self.flow.record_mfa_factor(m.organization_id, m.member_id, factor_type,
                                                                    **passed), factor_type=factor_type)
        if "intermediate_session_token" in passed:
            self.ists.pop(m.member_id, None)
        self.sessions[m.member_id] = result.session_token
        return result

    def delete_phone(self, member: MemberRef) -> Member:
        m = self._record(member)
        result: Member = self._call("delete_phone", m,
                                    lambda: self.flow.delete_mfa_phone_number(m.organization_id, m.member_id))
        return result

    def idle(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> float:
        """Let time pass; the world's clock after it."""
        now = self.clock.advance(seconds, minutes=minutes, hours=hours)
        self.steps.append(Step("advance", None, {"seconds": seconds + 60 * minutes + 3600 * hours}, now))
        return now

    def session(self, member: MemberRef) -> str | None:
        return self.sessions.get(self._record(member).member_id)

    def ist(self, member: MemberRef) -> str | None:
        return self.ists.get(self._record(member).member_id)

    def locked(self, member: MemberRef) -> bool:
        m = self._record(member)
        return bool(self.flow.get_member(m.organization_id, m.member_id).is_locked)

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def members(self) -> dict[str, Member]:
        return dict(self._members)

