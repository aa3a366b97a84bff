"""explore: every sequence of at most ``depth`` actions over a small fixed universe, breadth first.

It runs each sequence through a flow built for the policy (or by ``flow_factory``) and checks, after every
step, built-in invariants derived from the *policy* — kept in a model beside the flow, never read from the flow
under test — and the user's properties. The first level that holds a violating sequence ends the search, so a
reported sequence is a shortest one. Equivalent states (the same store contents up to the names of tokens and
codes and a shift of time, the same recent sends, the same knowledge of the world) are explored once; the
in-memory store is snapshotted and restored instead of replaying sequences; and actions on parts of the
universe that share nothing are explored in one order only.

What it cannot see: state abstraction forgets history that leaves no trace in the store or the recent sends (a
property about "ever" may need more depth); only flows on the in-memory store are explored.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import attrs
import phonenumbers

from mfa_flow.errors import ConfigurationError, MfaError
from mfa_flow.events import Event
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization
from mfa_flow.state import CodeState, GuardState, LoginState, MemberState, SendWindow, SessionIndex, SessionState
from mfa_flow.stores import MemoryStore
from mfa_flow.testing.world import FlowFactory, MfaWorld, Step

__all__ = ["INVARIANTS", "Checker", "Report", "Violation", "explore", "universe"]

Property = Callable[[MfaWorld], None]

#: The built-in invariants, by the name a violation carries.
INVARIANTS: Final = ("mfa_bypass", "one_live_code", "wrong_destination", "unverified_link", "refused_destination",
                     "locked_activity", "lockout", "send_limits", "code_expiry", "inactivity", "secret_leak",
                     "no_crash")

# --- the universe ------------------------------------------------------------------------------------------------


@attrs.frozen
class Person:
    """A member of the universe: its short name (for reading), its record, whose token is "another member's",
    and the numbers a send may ask for (none, then its organization's)."""

    name: str
    member: Member
    partner: str
    numbers: tuple[str | None, ...]


#: Per organization: the members' names (a verified phone, no phone, TOTP and no phone, a second member whose
#: number is already linked), the first one's number, the second's, a free CA number, a GB and a premium-rate one.
_UNIVERSE: Final = (
    (Organization("organization-explore-a", organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"),
     ("alice", "ben", "cara", "dan"), "+14155550101", "+14155550102", "+16135550101", "+447400123456",
     "+19002345678"),
    (Organization("organization-explore-b", organization_slug="bolt", mfa_policy="OPTIONAL",
                  mfa_methods="RESTRICTED", allowed_mfa_methods=["totp"]),
     ("erin", "finn", "gia", "hugo"), "+14155550201", "+14155550202", "+16135550102", "+447400123457",
     "+19002345679"),
)
METHODS: Final = ("password", "sso")


@functools.lru_cache(maxsize=256)
def _e164(number: str) -> str | None:
    """A number as the model reads it (a national form is read as a US number)."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(number, "US"), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return None


def _memory_store(flow: Any) -> MemoryStore:
    store = getattr(flow, "store", None)
    if not isinstance(store, MemoryStore):
        raise ConfigurationError("explore: the flow under test must run on a MemoryStore (only in-memory flows "
                                 "are explored)")
    return store


def universe(policy: Policy | None = None, *, flow_factory: FlowFactory | None = None) -> tuple[MfaWorld,
                                                                                                 list[Person]]:
    """A fresh world holding explore's universe, and its people in order."""
    world = MfaWorld(policy, flow_factory=flow_factory)
    _memory_store(world.flow)
    people: list[Person] = []
    for org, names, own, second, ca, gb, premium in _UNIVERSE:
        world.load_organization(org)
        national = phonenumbers.format_number(phonenumbers.parse(own), phonenumbers.PhoneNumberFormat.NATIONAL)
        numbers = (None, own, national, second, ca, gb, premium)
        oid = org.organization_id
        members = (  # a member's id is its name, so that a counter-example reads as it runs
            Member(names[0], oid, name=names[0], mfa_phone_number=own, mfa_phone_number_verified=True),
            Member(names[1], oid, name=names[1]),
            Member(names[2], oid, name=names[2], totp_registration_id=f"totp-{names[2]}"),
            Member(names[3], oid, name=names[3], mfa_phone_number=second, mfa_phone_number_verified=True),
        )
        for i, member in enumerate(members):
            world.load_member(member)
            people.append(Person(names[i], member, names[(i + 1) % len(names)], numbers))
    return world, people


# --- the model: what the policy says, kept beside the flow ------------------------------------------------------


@attrs.frozen
class Known:
    """What the checker knows of one member, from the policy and what it has seen go out and come back."""

    linked: str  # the number linked, as the model believes (E.164, "" for none)
    verified: bool
    totp: bool
    enrolled: bool
    codes: tuple[tuple[str, float], ...] = ()  # (code, sent_at), oldest first
    used: frozenset[str] = frozenset()
    streak: int = 0  # wrong codes answered otp_code_not_found since the last success or lock end
    locked_at: float | None = None
    touched: float | None = None  # the member's session's last activity (creation, touch, step-up)
    session_factor: bool = False  # whether that session carries an active factor of the member

    @property
    def active_factor(self) -> bool:
        return (bool(self.linked) and self.verified) or self.totp


Action = tuple[Any, ...]
TOKENS: Final = ("own", "other", "none")
CODES: Final = ("newest", "wrong", "previous")
Outcome = tuple[str, Any, BaseException | None]


@attrs.define
class _Image:
    """One state, whole: the store, the clock, the world's tokens and logs, the model."""

    data: dict[str, Any]
    buckets: dict[int, list[str]]
    next_sweep: float
    now: float
    sent: tuple[Any, ...]
    events: tuple[Any, ...]
    steps: tuple[Step, ...]
    ists: dict[str, str]
    sessions: dict[str, str]
    known: dict[str, Known]
    sends: tuple[tuple[float, str, str], ...]  # (time, member, to) of every SMS within the longest window
    secrets: frozenset[str]


class Checker:
    """The universe, a flow for a policy, the built-in invariants and the user's properties. ``run(*action)``
    makes one action and raises ``AssertionError`` naming what it broke (generated tests call it)."""

    def __init__(self, policy: Policy | None = None, *, properties: Iterable[Property] = (),
                 flow_factory: FlowFactory | None = None) -> None:
        self.policy = policy if policy is not None else Policy()
        self.properties = tuple(properties)
        self.world, people = universe(self.policy, flow_factory=flow_factory)
        self.people = {p.name: p for p in people}
        self.rank = {p.name: i for i, p in enumerate(people)}
        self.required = {org.organization_id for org, *_ in _UNIVERSE if org.mfa_policy == "REQUIRED_FOR_ALL"}
        self.store: MemoryStore = _memory_store(self.world.flow)
        self.known = {p.name: Known(p.member.mfa_phone_number, p.member.mfa_phone_number_verified,
                                    bool(p.member.totp_registration_id), p.member.mfa_enrolled) for p in people}
        self.sends: tuple[tuple[float, str, str], ...] = ()
        self.secrets: frozenset[str] = frozenset()
        p = self.policy
        windows = [p.send_limit_per_member, p.send_limit_per_phone,
                   *(w for w in (p.send_limit_per_region, p.send_limit_global) if w is not None)]
        self.window = max(p.resend_cooldown, *(seconds for _, seconds in windows))
        bounds = {p.otp_ttl, p.ist_ttl, p.inactivity_timeout, p.lockout_duration, *(s for _, s in windows),
                  *((p.resend_cooldown,) if p.resend_cooldown else ())}
        self.advances = tuple(sorted({b + e for b in bounds for e in (-1, 1) if b + e > 0}))
        self.coupled = p.send_limit_per_region is not None or p.send_limit_global is not None
        self._allowed_cache: dict[str, bool] = {}
        self._digests: dict[str, str] = {}
        self._abstracts: dict[tuple[int, float, tuple[tuple[str, str], ...]], tuple[Any, ...]] = {}

    # --- snapshots --------------------------------------------------------------------------------------------

    def image(self) -> _Image:
        store, world = self.store, self.world
        # Versions are not restored: they go on growing across branches, so one version names one written
        # record in the whole exploration (the abstract-state cache relies on it; compare-and-set needs no more).
        return _Image(dict(store._data), {k: list(v) for k, v in store._buckets.items()},  # noqa: SLF001
                      store._next_sweep, world.clock.now(), tuple(world.sms.sent), tuple(world.events),  # noqa: SLF001
                      tuple(world.steps), dict(world.ists), dict(world.sessions),
                      dict(self.known), self.sends, self.secrets)

    def restore(self, image: _Image) -> None:
        store, world = self.store, self.world
        store._data = dict(image.data)  # noqa: SLF001
        store._buckets = {k: list(v) for k, v in image.buckets.items()}  # noqa: SLF001
        store._next_sweep = image.next_sweep  # noqa: SLF001
        world.clock._now = image.now  # noqa: SLF001 - the checker owns the world's clock
        world.sms.sent[:] = image.sent
        world.events[:] = image.events
        world.steps[:] = image.steps
        world.ists, world.sessions = dict(image.ists), dict(image.sessions)
        self.known = dict(image.known)
        self.sends, self.secrets = image.sends, image.secrets

    def forget(self) -> None:
        """Drop the abstract entries read so far: they serve the siblings of one state (same time, mostly the
        same records), and kept for a whole exploration they would grow with every run."""
        self._abstracts.clear()

    def unchanged_since(self, image: _Image) -> bool:
        """Whether the last step left the state as ``image`` was (a refusal before any write, which is most of
        them): then its key is the image's own, already seen, and need not be computed."""
        world = self.world
        return (world.clock.now() == image.now and len(world.sms.sent) == len(image.sent)
                and self.store._data == image.data  # noqa: SLF001 - identical entries compare by identity
                and world.ists == image.ists and world.sessions == image.sessions
                and all(self.known[name] is known for name, known in image.known.items()))

    def key(self) -> Any:
        """The state up to the names of tokens and codes and a shift of time: equal keys behave alike."""
        now = self.world.clock.now()
        roles: dict[str, str] = {}
        digests = self._digests
        for prefix, tokens in (("ist", self.world.ists), ("session", self.world.sessions)):
            for name, token in tokens.items():
                digest = digests.get(token)
                if digest is None:
                    digest = digests[token] = hashlib.sha256(token.encode()).hexdigest()
                roles[digest] = f"{prefix}-{name}"
        cache, window = self._abstracts, self.window
        named = tuple(roles.items())  # the same entry reads differently once its token has another role
        entries = []
        for key, (version, value, expires) in self.store._data.items():  # noqa: SLF001
            if expires is not None and expires <= now:
                continue  # an expired record behaves as an absent one
            known = cache.get((version, now, named))  # a version never repeats: one entry, read at one time
            if known is None:
                known = cache[(version, now, named)] = _abstract(key, value, now, roles, window)
            entries.append(known)
        entries.sort()
        ttl, idle = self.policy.otp_ttl, self.policy.inactivity_timeout
        people = tuple(
            (name, name in self.world.ists, name in self.world.sessions, k.linked, k.verified, k.enrolled,
             min(len(k.codes), 2), min(now - k.codes[-1][1], ttl) if k.codes else -1.0,
             k.codes[-1][0] in k.used if k.codes else False, k.streak,
             -1.0 if k.locked_at is None else max(0.0, k.locked_at + self.policy.lockout_duration - now),
             -1.0 if k.touched is None else min(now - k.touched, idle + 1), k.session_factor)
            for name, k in self.known.items())
        sends = tuple(sorted((now - t, who, to) for t, who, to in self.sends if now - t < self.window))
        return (tuple(entries), people, sends)

    # --- the actions --------------------------------------------------------------------------------------------

    def actions(self) -> Iterator[Action]:
        """Every action worth making from here (none that would make the very same call as another)."""
        for seconds in self.advances:
            yield ("advance", seconds)
        sessions = self.world.sessions
        for name, person in self.people.items():
            for method in METHODS:
                yield ("login", name, method)
            tokens = ["none", *(["own"] if self._token(name) else []),
                      *(["other"] if self._token(person.partner) else [])]
            for number in person.numbers:
                for token in tokens:
                    yield ("send", name, number, token)
            known = self.known[name]
            for code in CODES if len(known.codes) > 1 else CODES[:2] if known.codes else ():
                for token in tokens:
                    yield ("verify", name, code, token)
            if name in sessions:
                yield ("check_session", name)
            if "own" in tokens:
                yield ("record_factor", name)
            yield ("delete_phone", name)
            yield ("fail_until_locked", name)
            yield ("send_until_limited", name)

    def touches(self, action: Action) -> frozenset[str]:
        """What an action may read or change beyond its own member: the member whose token it passes, the
        numbers it sends to (their send windows), its organization's link index when it may link or unlink
        a number. Advancing time, or a region or global limit, couples everything."""
        if action[0] == "advance" or self.coupled:
            return frozenset({"*"})
        name, kind = action[1], action[0]
        known = self.known[name]
        touched = {name}
        if kind in ("login", "send", "check_session", "fail_until_locked", "send_until_limited"):  # may text the number
            touched.add(f"number:{known.linked}")
        org = f"org:{self.people[name].member.organization_id}"  # the organization's index of linked numbers
        if (kind == "send" and action[2] is not None and not known.linked) \
                or (kind == "delete_phone" and known.linked) \
                or (kind == "verify" and self.policy.link_phone_on == "verify"):
            touched.add(org)
        if kind in ("send", "verify") and action[3] == "other":
            touched.add(self.people[name].partner)
        if kind == "send" and action[2] is not None:
            touched.add(f"number:{_e164(action[2])}")
        return frozenset(touched)

    def _set(self, name: str, **changes: Any) -> Known:
        """The model's new record of a member (records are shared between snapshots: never changed in place)."""
        known = self.known[name] = attrs.evolve(self.known[name], **changes)
        return known

    def _token(self, name: str) -> dict[str, str]:
        return self.world.token(self.people[name].member)

    def _pass(self, name: str, kind: str) -> dict[str, str]:
        return {} if kind == "none" else self._token(name if kind == "own" else self.people[name].partner)

    # --- making a step --------------------------------------------------------------------------------------------

    def run(self, *action: Any) -> Step:
        """Make ``action``; AssertionError naming the first invariant or property it broke."""
        step, broken = self.step(tuple(action))
        if broken:
            raise AssertionError(f"{broken[0][0]}: {broken[0][1]}")
        return step

    def step(self, action: Action) -> tuple[Step, list[tuple[str, str]]]:
        """Make ``action``: the step the world records and the violations found (invariant or property, message)."""
        world = self.world
        first_event, first_sms = len(world.events), len(world.sms.sent)
        broken: list[tuple[str, str]] = []
        if action[0] == "advance":
            world.clock.advance(action[1])
            step = Step("advance", None, {"seconds": action[1]}, world.clock.now())
            world.steps.append(step)
        else:
            kind, name = action[0], action[1]
            step = Step(kind, self.people[name].member.member_id, _args(action), world.clock.now())
            world.steps.append(step)
            if kind == "fail_until_locked":
                outcomes = self._fail_until_locked(name, broken)
            elif kind == "send_until_limited":
                outcomes = self._send_until_limited(name, broken)
            else:
                outcomes = [self._call(action, broken)]
            _, step.result, step.error = outcomes[-1]
        self._settle_locks()
        if len(world.sms.sent) > first_sms:  # windows only empty as time passes: only a send can break a limit
            self._check_limits(broken)
        self._check_leaks(step, first_event, broken)
        for prop in self.properties:
            try:
                prop(world)
            except AssertionError as exc:
                broken.append((prop.__name__, str(exc) or "assertion failed"))
            except Exception as exc:  # noqa: BLE001 - a property that cannot even be evaluated is broken too
                broken.append((prop.__name__, f"raised {type(exc).__name__}"))
        return step, broken

    def _call(self, action: Action, broken: list[tuple[str, str]]) -> Outcome:
        """One call to the flow; the model follows it and judges it."""
        kind, name = action[0], action[1]
        world, person, known = self.world, self.people[name], self.known[name]
        flow, member = world.flow, person.member
        oid, mid = member.organization_id, member.member_id
        now = world.clock.now()
        first = len(world.sms.sent)
        destination = known.linked
        token = self._token(name) if kind in ("check_session", "record_factor") else self._pass(name, action[3]) \
            if kind in ("send", "verify") else {}
        code = self._code(known, action[2]) if kind == "verify" else ""
        self._settle_locks()
        locked = known.locked_at is not None
        result: Any = None
        error: BaseException | None = None
        try:
            if kind == "login":
                result = flow.authenticate_primary(oid, mid, action[2])
            elif kind == "send":
                if action[2] is not None and not known.linked:
                    destination = _e164(action[2]) or ""
                result = flow.send_sms_otp(oid, mid, mfa_phone_number=action[2], **token)
            elif kind == "verify":
                result = flow.authenticate_sms_otp(oid, mid, code, **token)
            elif kind == "check_session":
                result = flow.authenticate_session(session_token=world.sessions[name])
            elif kind == "record_factor":
                result = flow.record_mfa_factor(oid, mid, "totp", **token)
            else:
                result = flow.delete_mfa_phone_number(oid, mid)
        except MfaError as exc:
            error = _bare(exc)
        except Exception as exc:  # noqa: BLE001 - a crash is what no_crash reports
            error = _bare(exc)
            broken.append(("no_crash", f"{kind} raised {type(exc).__name__}, not an MfaError"))
        self._take_messages(name, first, destination, locked, broken)
        if error is None:
            self._succeeded(kind, name, action, token, code, result, locked, broken)
        elif isinstance(error, MfaError) and kind == "verify":
            self._refused(name, error, now, broken)
        return kind, result, error

    def _code(self, known: Known, kind: str) -> str:
        newest = known.codes[-1][0]
        if kind == "newest":
            return newest
        if kind == "previous":
            return known.codes[-2][0]
        taken = {c for c, _ in known.codes}
        return next(c for i in range(1, 50) if (c := f"{(int(newest) + i) % 1_000_000:06d}") not in taken)

    def _take_messages(self, name: str, first: int, destination: str, locked: bool,
                       broken: list[tuple[str, str]]) -> None:
        """The SMS this call sent: each must go to the member's number (or the one it linked), to an allowed
        destination, not while the member is locked; the model remembers its code and time."""
        world, known, now = self.world, self.known[name], self.world.clock.now()
        for message in world.sms.sent[first:]:
            self.secrets |= {message.code}
            self.sends = (*(s for s in self.sends if now - s[0] < self.window), (now, name, message.to))
            if message.member_id != self.people[name].member.member_id:
                broken.append(("wrong_destination", f"an SMS for {message.member_id} went out on {name}'s call"))
                continue
            known = self._set(name, codes=(*known.codes, (message.code, now)))
            if message.to != destination:
                broken.append(("wrong_destination", (f"an SMS for {name} went to {_masked(message.to)}, not to "
                                                    f"{_masked(destination) or 'a linked number'}")))
            if not self._allowed(message.to):
                broken.append(("refused_destination", (f"an SMS went to {_masked(message.to)}, which the policy "
                                                      "refuses (region or number type)")))
            if locked:
                broken.append(("locked_activity", f"an SMS went to {name} while {name} was locked"))

    def _allowed(self, e164: str) -> bool:
        if e164 not in self._allowed_cache:
            self._allowed_cache[e164] = self._judge_destination(e164)
        return self._allowed_cache[e164]

    def _judge_destination(self, e164: str) -> bool:
        p = self.policy
        if e164 in p.test_numbers:
            return True
        number = phonenumbers.parse(e164)
        region = phonenumbers.region_code_for_number(number)
        kind = phonenumbers.number_type(number)
        return (region in p.allowed_regions and region not in p.unsupported_regions
                and kind not in p.blocked_type_values and phonenumbers.is_valid_number(number))

    def _succeeded(self, kind: str, name: str, action: Action, token: dict[str, str], code: str, result: Any,
                   locked: bool, broken: list[tuple[str, str]]) -> None:
        world, known, now, p = self.world, self.known[name], self.world.clock.now(), self.policy
        if locked and kind in ("login", "send", "verify", "record_factor"):
            broken.append(("locked_activity", f"{name}'s {_VERBS[kind]} went through while {name} was locked"))
        required = self.people[name].member.organization_id in self.required
        owed = required or known.enrolled
        if kind == "login":
            self.secrets |= {t for t in (result.session_token, result.intermediate_session_token) if t}
            if result.session_token:
                if owed:
                    broken.append(("mfa_bypass", (f"{name} got a session from primary authentication alone, "
                                                 "though MFA is owed")))
                world.sessions[name] = result.session_token
                world.ists.pop(name, None)
                known = self._set(name, touched=now, session_factor=False)
            elif result.intermediate_session_token:
                world.ists[name] = result.intermediate_session_token
        elif kind == "send":
            number = action[2]
            if number is not None and not known.linked:  # the send linked this number
                passed_ist = "intermediate_session_token" in token
                carries = action[3] == "own" and not passed_ist and known.session_factor
                if known.active_factor and not carries:
                    how = ("no token" if action[3] == "none"
                           else f"{_TOKEN_WORDS[action[3]]}, which carries none of those factors")
                    broken.append(("unverified_link", (f"a number was linked to {name}, who has an active MFA "
                                                      f"factor, with {how}")))
                if p.link_phone_on == "send":
                    known = self._set(name, linked=_e164(number) or number, verified=False)
        elif kind == "verify":
            self.secrets |= {result.session_token}
            which = action[2]
            if which == "wrong":
                broken.append(("mfa_bypass", f"a wrong code was accepted for {name}"))
            elif which == "previous":
                broken.append(("one_live_code", f"{name}'s previous code was accepted after a newer one was sent"))
            elif code in known.used:
                broken.append(("mfa_bypass", f"{name}'s code was accepted a second time"))
            elif now - known.codes[-1][1] >= p.otp_ttl:
                broken.append(("code_expiry", (f"{name}'s code was accepted {now - known.codes[-1][1]:g} s after it "
                                              f"was sent (otp_ttl is {p.otp_ttl:g} s)")))
            if action[3] == "other":
                broken.append(("mfa_bypass", f"{name}'s code was accepted with another member's token"))
            linked = known.linked or (world.sms.sent[-1].to if p.link_phone_on == "verify" and world.sms.sent
                                      else "")
            known = self._set(name, used=known.used | {code}, streak=0, linked=linked,
                              verified=known.verified or bool(linked), enrolled=known.enrolled or required)
            if action[3] == "own":
                world.ists.pop(name, None)
                world.sessions[name] = result.session_token
                known = self._set(name, touched=now, session_factor=known.active_factor)
        elif kind == "check_session":
            if not result.step_up_required:
                if known.active_factor and known.touched is not None and now - known.touched > p.inactivity_timeout:
                    broken.append(("inactivity", (f"{name}'s session passed a check {now - known.touched:g} s after "
                                                 f"its last use (inactivity_timeout is {p.inactivity_timeout:g} s)")))
                known = self._set(name, touched=now)
        elif kind == "record_factor":
            self.secrets |= {result.session_token}
            world.ists.pop(name, None)
            world.sessions[name] = result.session_token
            known = self._set(name, touched=now, session_factor=known.totp)
        else:  # delete
            known = self._set(name, linked="", verified=False)

    def _refused(self, name: str, error: MfaError, now: float, broken: list[tuple[str, str]]) -> None:
        """A refused code: a wrong one counts, and the one that reaches the threshold must be the lock's."""
        known = self.known[name]
        if error.error_type == "otp_code_not_found":
            known = self._set(name, streak=known.streak + 1)
            if known.streak >= self.policy.lockout_threshold and known.locked_at is None:
                broken.append(("lockout", (f"{name}'s wrong code number {known.streak} in a row was answered "
                                          f"otp_code_not_found: not locked (lockout_threshold is "
                                          f"{self.policy.lockout_threshold})")))
        elif error.error_type == "user_lock_limit_reached" and known.locked_at is None:
            self._set(name, locked_at=now, streak=0)

    def _settle_locks(self) -> None:
        """A lock the model saw begin ends after lockout_duration, and the counter with it."""
        now = self.world.clock.now()
        for name, known in self.known.items():
            if known.locked_at is not None and now >= known.locked_at + self.policy.lockout_duration:
                self._set(name, locked_at=None, streak=0)

    def _fail_until_locked(self, name: str, broken: list[tuple[str, str]]) -> list[Outcome]:
        """Wrong codes (a new code sent whenever the last one died) until refused otherwise, or one past the
        lockout threshold: a flow that never locks is seen."""
        outcomes: list[Outcome] = []
        for _ in range(3 * self.policy.lockout_threshold + 3):
            last = outcomes[-1][2] if outcomes else None
            if not self.known[name].codes or (isinstance(last, MfaError)
                                                and last.error_type == "unable_to_auth_otp_code"):
                outcomes.append(self._call(("send", name, None, "own"), broken))
                if outcomes[-1][2] is not None:
                    return outcomes
            outcomes.append(self._call(("verify", name, "wrong", "own"), broken))
            error = outcomes[-1][2]
            if any(b[0] == "lockout" for b in broken):
                return outcomes
            if not isinstance(error, MfaError) or error.error_type not in ("otp_code_not_found",
                                                                            "unable_to_auth_otp_code"):
                return outcomes
        return outcomes

    def _send_until_limited(self, name: str, broken: list[tuple[str, str]]) -> list[Outcome]:
        """Sends to the member's own number until refused, or one past the per-member limit."""
        outcomes: list[Outcome] = []
        for _ in range(self.policy.send_limit_per_member[0] + 1):
            outcomes.append(self._call(("send", name, None, "own"), broken))
            if outcomes[-1][2] is not None:
                break
        return outcomes

    def _check_limits(self, broken: list[tuple[str, str]]) -> None:
        """No more SMS in any window than the policy allows: per member, per number, per region, overall."""
        now, p = self.world.clock.now(), self.policy
        limits: list[tuple[str, tuple[int, float], Callable[[tuple[float, str, str]], str]]] = [
            ("member", p.send_limit_per_member, lambda s: s[1]), ("phone", p.send_limit_per_phone, lambda s: s[2])]
        if p.send_limit_per_region is not None:
            limits.append(("region", p.send_limit_per_region,
                           lambda s: str(phonenumbers.region_code_for_number(phonenumbers.parse(s[2])))))
        if p.send_limit_global is not None:
            limits.append(("global", p.send_limit_global, lambda _: "*"))
        for label, (count, seconds), group in limits:
            tally: dict[str, int] = {}
            for sent in self.sends:
                if now - sent[0] < seconds:
                    tally[group(sent)] = tally.get(group(sent), 0) + 1
            for who, n in tally.items():
                if n > count:
                    shown = _masked(who) if label == "phone" else who
                    broken.append(("send_limits", (f"{n} SMS within {seconds:g} s for the {label} {shown} (the policy "
                                                  f"allows {count})")))
        cooldown = p.resend_cooldown
        if cooldown:
            last: dict[str, float] = {}
            for at, who, _ in self.sends:  # in the order they went out
                if who in last and at - last[who] < cooldown:
                    broken.append(("send_limits", (f"two SMS to {who} {at - last[who]:g} s apart (resend_cooldown "
                                                  f"is {cooldown:g} s)")))
                last[who] = at

    def _check_leaks(self, step: Step, first_event: int, broken: list[tuple[str, str]]) -> None:
        """No code ever sent and no token ever issued in an event, an error message or a repr."""
        if not self.secrets:
            return
        texts = [_event_text(e) for e in self.world.events[first_event:]]
        if step.error is not None:
            texts += [str(step.error), repr(step.error)]
        if step.result is not None:
            texts.append(repr(step.result))
        joined = "\n".join(texts)
        if not any(secret in joined for secret in self.secrets):  # the common case, decided in C
            return
        events = len(self.world.events) - first_event
        for i, text in enumerate(texts):
            if not self.secrets.isdisjoint(_WORDS.findall(text)):  # a whole word: a code inside a longer id is not one
                where = "an event" if i < events else "an error" if step.error is not None and i < events + 2 \
                    else "the answer's repr"
                broken.append(("secret_leak", f"a code or a token appears in {where} of {step.action}"))
                return


_VERBS: Final = {"login": "login", "send": "send", "verify": "code", "record_factor": "recorded factor"}
_TOKEN_WORDS: Final = {"own": "its own token", "other": "another member's token", "none": "no token"}


def _event_text(event: object) -> str:
    """What an event shows: its repr, read field by field (the same text, without formatting the floats)."""
    if type(event) is not Event:
        return repr(event)
    fields = f"{event.name} {event.organization_id} {event.member_id} {event.phone} {event.reason}"
    return f"{fields} {event.data!r}" if event.data else fields


def _bare(error: BaseException) -> BaseException:
    """The error a step keeps, without its traceback and the exceptions it replaced: their frames would point
    back at it, a cycle the exploration (which runs with the garbage collector off) would keep forever."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _masked(e164: str) -> str:
    """A number as a counter-example shows it: its calling and area code and its last four digits, enough to
    tell the universe's numbers apart (``+1613…0101``, ``+1415…0101``) and no more."""
    return f"{e164[:5]}…{e164[-4:]}" if len(e164) > 9 else e164


def _args(action: Action) -> dict[str, Any]:
    kind = action[0]
    if kind == "login":
        return {"via": action[2]}
    if kind in ("send", "verify"):
        return {"number" if kind == "send" else "code": action[2], "token": action[3]}
    return {}


def _abstract(key: str, value: Any, now: float, roles: dict[str, str], window: float) -> tuple[Any, ...]:
    """A store entry without its random parts: tokens by their role, times relative to now."""
    kind, _, rest = key.partition(":")
    if kind in ("ist", "session"):
        rest = roles.get(rest, "?")
    if isinstance(value, CodeState):
        bound = roles.get(value.bound_to, "gone" if value.bound_to else "")  # never a digest's random characters
        return (kind, rest, value.state.value, bound, value.purpose, value.phone, now - value.sent_at, value.attempts)
    if isinstance(value, SessionState):
        return (kind, rest, value.state.value, value.member_id, now - value.last_accessed_at,
                value.expires_at - now, tuple((f.type, now - f.last_authenticated_at) for f in value.factors))
    if isinstance(value, LoginState):
        return (kind, rest, value.state.value, value.member_id, value.expires_at - now,
                tuple(f.type for f in value.factors))
    if isinstance(value, GuardState):
        return (kind, rest, value.state.value, value.failures, max(0.0, value.locked_until - now))
    if isinstance(value, SendWindow):
        return (kind, rest, tuple(now - t for t in value.times if now - t < window))
    if isinstance(value, MemberState):
        return (kind, rest, value.phone, value.phone_verified, value.pending_phone, value.enrolled,
                value.default_mfa_method)
    if isinstance(value, SessionIndex):
        return (kind, rest, len([e for e in value.entries if e[3] > now]))
    return (kind, rest if kind not in ("sid",) else "", type(value).__name__)


# --- what explore reports ------------------------------------------------------------------------------------------


@attrs.frozen
class Violation:
    """A broken invariant or property, with a shortest sequence of steps that breaks it."""

    property: str
    message: str
    steps: tuple[Step, ...]
    actions: tuple[Action, ...] = attrs.field(repr=False, eq=False, default=())
    policy: Policy = attrs.field(repr=False, eq=False, factory=Policy)
    properties: tuple[Property, ...] = attrs.field(repr=False, eq=False, default=())
    flow_factory: FlowFactory | None = attrs.field(repr=False, eq=False, default=None)

    def __str__(self) -> str:
        lines = [f"{self.property}: {self.message}"]
        start = self.steps[0].at if self.steps else 0.0
        previous = start
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i}. {describe(step, step.at - previous)}")
            if step.action != "advance":  # the next call says how long after this one it came
                previous = step.at
        return "\n".join(lines)

    def to_pytest(self) -> str:
        """The source of a test function that replays the steps through the same universe and fails the
        same way (a user property is imported by its module and name when it can be)."""
        return to_pytest(self)


@attrs.frozen
class Report:
    ok: bool
    violations: list[Violation]
    runs: int
    states: int
    elapsed: float
    complete: bool
    depth: int

    def __str__(self) -> str:
        head = (f"explore: {'no violation' if self.ok else f'{len(self.violations)} violation(s)'} — {self.runs} runs, "
                f"{self.states} distinct states, depth {self.depth}{'' if self.complete else ' (cut short)'}, "
                f"{self.elapsed:.1f} s")
        return "\n\n".join([head, *(str(v) for v in self.violations)])


def describe(step: Step, since: float) -> str:
    """One step as a person reads it: "119 s later, alice verifies the newest code with its own token → session"."""
    if step.action == "advance":
        return f"{step.args['seconds']:g} s pass"
    name = step.member_id or ""
    args = step.args
    what = {
        "login": lambda: f"{name} logs in by {args['via']}",
        "send": lambda: f"{name} asks for a code" + (f" to {args['number']}" if args["number"] else "")
        + f" with {_TOKEN_WORDS[args['token']]}",
        "verify": lambda: f"{name} submits {_CODE_WORDS[args['code']]} with {_TOKEN_WORDS[args['token']]}",
        "check_session": lambda: f"{name}'s session is checked",
        "record_factor": lambda: f"{name} completes MFA with a TOTP code the application verified",
        "delete_phone": lambda: f"{name}'s phone number is deleted",
        "fail_until_locked": lambda: f"{name} submits wrong codes (new codes sent as needed) until refused",
        "send_until_limited": lambda: f"{name} asks for codes until refused",
    }[step.action]()
    prefix = f"{since:g} s later, " if since > 0 else ""
    return f"{prefix}{what} → {_outcome(step)}"


_CODE_WORDS: Final = {"newest": "the newest code", "wrong": "a wrong code", "previous": "the previous code"}


def _outcome(step: Step) -> str:
    if step.error is not None:
        return getattr(step.error, "error_type", None) or f"crash ({type(step.error).__name__})"
    result = step.result
    if step.action == "login":
        if result.session_token:
            return "session"
        sent = result.mfa_required is not None and result.mfa_required.secondary_auth_initiated == "sms_otp"
        return "IST, code sent" if sent else "IST"
    if step.action == "check_session":
        if not result.step_up_required:
            return "the session is fresh"
        return "step-up required, code sent" if result.secondary_auth_initiated else "step-up required"
    return {"send": "code sent", "verify": "session", "record_factor": "session", "delete_phone": "deleted",
            "send_until_limited": "code sent", "fail_until_locked": "refused"}.get(step.action, "ok")


def to_pytest(violation: Violation) -> str:
    """A test function that replays ``violation`` through the same universe and fails the same way."""
    imports = ["from mfa_flow import Policy", "from mfa_flow.testing.explore import Checker"]
    notes: list[str] = []
    props = []
    for prop in violation.properties:
        ref = _importable(prop)
        if ref is None:  # the replay cannot fail the same way without it: it fails saying so
            missing = f"{prop.__name__} is not importable: define it in this module and list it in properties=[...]"
            notes.append(f"    raise AssertionError({missing!r})")
        else:
            imports.append(f"from {ref[0]} import {ref[1]}")
            props.append(ref[1])
    factory = ""
    if violation.flow_factory is not None:
        ref = _importable(violation.flow_factory)
        if ref is None:
            notes.append("    raise AssertionError('the flow_factory is not importable: import it here and pass it "
                         "as flow_factory=...')")
        else:
            imports.append(f"from {ref[0]} import {ref[1]}")
            factory = f", flow_factory={ref[1]}"
    name = re.sub(r"\W+", "_", violation.property).strip("_") or "property"
    lines = [f"def test_{name}_counterexample() -> None:",
             f'    """Found by mfa_flow\'s explore: {violation.message.replace(chr(34), chr(39))}"""',
             *(f"    {line}" for line in imports), *notes,
             f"    checker = Checker({_policy_source(violation.policy)}, properties=[{', '.join(props)}]{factory})"]
    start = violation.steps[0].at if violation.steps else 0.0
    previous = start
    for i, (action, step) in enumerate(zip(violation.actions, violation.steps, strict=True), 1):
        lines.append(f"    checker.run{action!r}  # {i}. {describe(step, step.at - previous)}")
        if step.action != "advance":
            previous = step.at
    return "\n".join(lines) + "\n"


def _importable(obj: Any) -> tuple[str, str] | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        return None
    return module, qualname


def _policy_source(policy: Policy) -> str:
    default = Policy()
    changed = [f"{a.name}={getattr(policy, a.name)!r}" for a in attrs.fields(Policy)
               if a.init and getattr(policy, a.name) != getattr(default, a.name)]
    return f"Policy({', '.join(changed)})"


Progress = Callable[[int, int, int], None]


def explore(policy: Policy | None = None, *, properties: Sequence[Property] = (), depth: int = 6,
            seconds: float | None = None, flow_factory: FlowFactory | None = None,
            all_violations: bool = False, progress: Progress | None = None) -> Report:
    """Breadth first over every sequence of at most ``depth`` actions; see the module's docstring.

    ``progress(depth_reached, states, runs)`` is called as it goes (the ``mfa-flow check`` progress line)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigurationError("depth: must be an integer of at least 1")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0):
        raise ConfigurationError("seconds: must be a positive number of seconds, or None")
    started = _CLOCK()
    collecting = gc.isenabled()
    gc.disable()  # a run leaves no cycles (tested): the collector would only scan the snapshots, again and again
    try:
        return _explore(policy, properties, depth, seconds, flow_factory, all_violations, progress, started)
    finally:
        if collecting:
            gc.enable()


def _explore(policy: Policy | None, properties: Sequence[Property], depth: int, seconds: float | None,
             flow_factory: FlowFactory | None, all_violations: bool, progress: Progress | None,
             started: float) -> Report:
    deadline = None if seconds is None else started + seconds
    checker = Checker(policy, properties=properties, flow_factory=flow_factory)
    # A state is remembered by the 64-bit hash of its key: a key is kilobytes and depth 5 meets millions of
    # them; two distinct states share a hash with odds of about n^2 / 2^65 (1 in 10^7 at two million).
    seen = {hash(checker.key())}
    frontier: list[tuple[_Image, tuple[Action, ...], frozenset[str] | None, Action | None]] = [
        (checker.image(), (), None, None)]
    found: dict[str, Violation] = {}
    runs, reached, complete = 0, 0, True
    for level in range(1, depth + 1):
        next_frontier: list[tuple[_Image, tuple[Action, ...], frozenset[str] | None, Action | None]] = []
        for image, path, last_touched, last in frontier:
            checker.restore(image)
            checker.forget()
            # What each action touches, judged in this state (a sibling's step may change what one would touch).
            for action, touched in [(action, checker.touches(action)) for action in checker.actions()]:
                if last is not None and last_touched is not None and _commutes_before(checker, action, touched,
                                                                                    last, last_touched):
                    continue  # the same two actions in the other order were explored: one order suffices
                if deadline is not None and _CLOCK() > deadline:
                    complete = False
                    break
                checker.restore(image)
                _, broken = checker.step(action)
                runs += 1
                new = _confirmed([b for b in broken if b[0] not in found], (*path, action), checker, flow_factory)
                for name, message in new:
                    if name not in found:  # a step that breaks one invariant twice is reported by the first
                        found[name] = Violation(name, message, tuple(checker.world.steps), (*path, action),
                                                checker.policy, checker.properties, flow_factory)
                if new and not all_violations:
                    break
                if checker.unchanged_since(image):
                    continue
                key = hash(checker.key())
                if key not in seen:
                    seen.add(key)
                    if level < depth:  # the last level's states are counted, never expanded: no snapshot
                        next_frontier.append((checker.image(), (*path, action), touched, action))
            else:
                continue
            break
        reached = level
        if progress is not None:
            progress(level, len(seen), runs)
        if (found and not all_violations) or not complete or not next_frontier:
            break
        frontier = next_frontier
    return Report(not found, list(found.values()), runs, len(seen), _CLOCK() - started, complete, reached)


def _confirmed(broken: list[tuple[str, str]], path: tuple[Action, ...], checker: Checker,
               flow_factory: FlowFactory | None) -> list[tuple[str, str]]:
    """What ``path`` breaks when replayed from the start on a fresh flow. Snapshots restore the store and the
    world, not what a flow of the user's keeps elsewhere (a gateway adapter's cache): a violation that only
    state left by another sequence caused does not replay, and is dropped; the search goes on to the
    sequence that really causes it, which is then the shortest that does."""
    if not broken:
        return broken
    fresh = Checker(checker.policy, properties=checker.properties, flow_factory=flow_factory)
    replayed: set[str] = set()
    for action in path:
        replayed.update(name for name, _ in fresh.step(action)[1])
    return [b for b in broken if b[0] in replayed]


def _commutes_before(checker: Checker, action: Action, touched: frozenset[str], last: Action,
                     last_touched: frozenset[str]) -> bool:
    """Whether ``action`` (which touches ``touched``) shares nothing with the ``last`` one and comes before it
    in a fixed order: then the sequence with the two swapped, explored too, reaches the same state."""
    if action[0] == "advance" or "*" in last_touched:
        return False
    if "*" in touched or touched & last_touched:
        return False
    return (checker.rank[action[1]], repr(action)) < (checker.rank[last[1]], repr(last))


_CLOCK: Final = time.perf_counter
_WORDS: Final = re.compile(r"[\w-]+")
