"""P1: a Hypothesis state machine drives MfaFlow and the reference model side by side.

One organization with 2-3 members (verified phone, unverified phone, no phone, TOTP only), plus pairs of
phoneless members put in mid-run to pump one number. Rules: primary authentication (IST + automatic send),
explicit sends (linked / other member's / new / refused phones, in several renderings; IST / session / none /
other member's / forged / two tokens), submissions (current, previous, other member's, random, at the exact
expiry instant, bursts of wrong codes), authenticate_session after idle time (the §6.10 step-up, its automatic
code, its completion, a lock in between) and with bad arguments, clock steps, transport failures.

All clock steps are multiples of 7 s, so no call ever lands exactly on an IST, session, lock or send-window
boundary (120, 600, 3600 are not multiples of 7): only the code-expiry rule visits a boundary, the one the
spec pins (valid while ``now < sent_at + otp_ttl``). Settings come from the Hypothesis profile (conftest.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mfa_flow import Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import SmsMessage
from tests.reference_model import OTP_TTL, FlowModel, MemberState, Outcome

ORG = "organization-test-1"
MEMBER_IDS = ("member-test-0", "member-test-1", "member-test-2")
HOME_PHONES = ("+14155550100", "+14155550101", "+16135550102")
NEW_PHONES = ("+14155550131", "+16135550132")
PUMPED_PHONES = ("+14155550141", "+16135550142", "+14155550143")  # only one_number_many_members sends to them
PUMP_PREFIX = "member-pump-"  # the members one_number_many_members puts in
REFUSED_PHONES = {"+19005550123": "invalid_phone_number", "+18765550123": "invalid_phone_number_country_code"}
FORGED_TOKEN = "forged-token-never-issued-0000000000000000000"
LATTICE = 7
STEPS = (7, 14, 63, 119, 126, 602, 1806, 3605)
SIX_DIGITS = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")
FULL_WIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "+0123456789"})  # "+1" -> U+FF0B U+FF11

member_index = st.integers(0, 2)
token_choice = st.sampled_from(
    ["none", "own_ist", "own_session", "bound", "other_member", "forged", "both", "any"]
)
submit_token_choice = st.sampled_from(
    ["bound", "bound", "bound", "other_own", "own_ist", "own_session", "other_member", "forged", "none", "both",
     "any"]
)
six_digits = st.text("0123456789", min_size=6, max_size=6)


def render(e164: str, style: str) -> str:
    """Renderings of one +1 number that must all normalise to ``e164`` (spec §6.1)."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    renderings = {
        "e164": e164,
        "spaced": f"+1 ({area}) {exchange}-{line}",
        "tel": f"tel:+1-{area}-{exchange}-{line}",
        "full_width": e164.translate(FULL_WIDTH),
        "zero_width": f"\u200b+1\u200d{area}\u202e{exchange}\u2060{line}\ufeff",
        "padded": f"  \t+1 {area} {exchange} {line}\n",
    }
    return renderings[style]


class RecordingTransport(FakeTransport):
    """FakeTransport that also records every delivery attempt, including rejected ones."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[SmsMessage] = []

    def deliver(self, message: SmsMessage) -> None:
        self.attempts.append(message)
        super().deliver(message)


class LogRecorder(logging.Handler):
    """Every record the library logs (at DEBUG and up), formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def peek(flow: MfaFlow, member_id: str) -> tuple[Any, Any]:
    """The member's failure guard and code challenge as the store holds them (None when absent)."""
    from mfa_flow.state import keys

    guard_key, code_key = keys.guard(ORG, member_id), keys.code(ORG, member_id)
    with flow.store.transaction() as tx:
        entries = tx.read([guard_key, code_key])
    guard, code = entries.get(guard_key), entries.get(code_key)
    return (guard.value if guard else None), (code.value if code else None)


class FlowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.start = self.clock.now()
        self.transport = RecordingTransport()
        self.events: list[Any] = []
        self.flow = MfaFlow(clock=self.clock, transport=self.transport, events=[self.events.append],
                            policy=Policy())
        self.model: FlowModel
        self.member_ids: tuple[str, ...] = ()
        self.real: dict[int, str] = {}  # model token handle -> the library's token string
        self.owner: dict[int, str] = {}
        self.received: dict[str, list[str]] = {}  # every code each member's phone received, oldest first
        self.codes: set[str] = set()
        self.seen_attempts = 0
        self.seen_sent = 0
        self.seen_events = 0
        self.last_failures: dict[str, int] = {}
        self.was_locked: dict[str, bool] = {}
        self.passed: list[str] = []  # forged tokens passed in the current call
        self.succeeded: set[str] = set()  # members with a success since the last invariant check
        self.bound_to: dict[int, str | None] = {}  # id() of a recorded message -> the token of its call
        self.log = LogRecorder()
        self.logger = logging.getLogger("mfa_flow")
        self.log_level = self.logger.level
        self.logger.addHandler(self.log)
        self.logger.setLevel(logging.DEBUG)

    def teardown(self) -> None:
        self.logger.removeHandler(self.log)
        self.logger.setLevel(self.log_level)

    # -- setup --------------------------------------------------------------------------------------------
    @initialize(
        required=st.booleans(),
        kinds=st.lists(st.sampled_from(["verified", "unverified", "none", "none", "totp"]), min_size=2, max_size=3),
        enrolled=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def setup(self, required: bool, kinds: list[str], enrolled: list[bool]) -> None:
        self.flow.directory.put_organization(
            Organization(ORG, organization_slug="acme",
                         mfa_policy="REQUIRED_FOR_ALL" if required else "OPTIONAL"))
        states = []
        for i, kind in enumerate(kinds):
            mid = MEMBER_IDS[i]
            phone = HOME_PHONES[i] if kind in ("verified", "unverified") else ""
            member = Member(mid, ORG, email_address=f"{mid}@example.com", mfa_enrolled=enrolled[i],
                            mfa_phone_number=phone, mfa_phone_number_verified=kind == "verified",
                            totp_registration_id=f"totp-registration-test-{i}" if kind == "totp" else "")
            self.flow.directory.put_member(member)
            states.append(MemberState(mid, phone=phone, verified=kind == "verified", totp=kind == "totp",
                                      enrolled=enrolled[i]))
            self.received[mid] = []
            self.last_failures[mid] = 0
            self.was_locked[mid] = False
        self.member_ids = tuple(MEMBER_IDS[: len(kinds)])
        self.model = FlowModel(states, now=self.clock.now(), required_for_all=required,
                               refused_destinations=dict(REFUSED_PHONES))

    # -- helpers ------------------------------------------------------------------------------------------
    def _member(self, index: int) -> str:
        return self.member_ids[index % len(self.member_ids)]

    def _latest(self, member_id: str, kind: str | None = None) -> int | None:
        handles = [h for h, o in self.owner.items() if o == member_id
                   and (kind is None or self.model.tokens[h].kind == kind)]
        return max(handles) if handles else None

    def _tokens(
        self, member_id: str, choice: str, pick: int
    ) -> tuple[int | None, int | None, dict[str, str]]:
        """(model IST handle, model session handle, keyword arguments for the library)."""
        handle: int | None = None
        if choice == "own_ist":
            handle = self._latest(member_id, "ist")
        elif choice == "own_session":
            handle = self._latest(member_id, "session")
        elif choice == "bound":
            code = self.model.members[member_id].code
            handle = code.token if code is not None and code.token is not None else self._latest(member_id)
        elif choice == "other_own":  # a valid token of the member other than the one the code is bound to
            code = self.model.members[member_id].code
            bound = None if code is None else code.token
            valid = [h for h, o in self.owner.items() if o == member_id and h != bound
                     and not self.model.tokens[h].consumed and self.model.tokens[h].expires_at > self.model.now]
            handle = max(valid) if valid else None
        elif choice == "other_member":
            others = [h for h, o in self.owner.items() if o != member_id]
            handle = max(others) if others else None
        elif choice == "any" and self.real:
            handle = sorted(self.real)[pick % len(self.real)]
        elif choice == "forged":
            kind = "ist" if pick % 2 else "session"
            return ((-1, None, {"intermediate_session_token": FORGED_TOKEN}) if kind == "ist"
                    else (None, -1, {"session_token": FORGED_TOKEN}))
        elif choice == "both":
            ist = self._latest(member_id, "ist")
            session = self._latest(member_id, "session")
            return (-1 if ist is None else ist, -1 if session is None else session, {
                "intermediate_session_token": FORGED_TOKEN if ist is None else self.real[ist],
                "session_token": FORGED_TOKEN if session is None else self.real[session],
            })
        if handle is None:
            return None, None, {}
        if self.model.tokens[handle].kind == "ist":
            return handle, None, {"intermediate_session_token": self.real[handle]}
        return None, handle, {"session_token": self.real[handle]}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, MfaError | None]:
        self.passed = [v for v in kwargs.values() if isinstance(v, str) and v.startswith("forged-")]
        try:
            result = fn(*args, **kwargs)
        except MfaError as exc:
            self._no_leak(str(exc), repr(exc), exc.error_message, json.dumps(exc.to_dict()))
            return None, exc
        self._no_leak(repr(result), str(result))
        self._no_leak(json.dumps(result.to_dict(), default=str), tokens=False)
        return result, None

    def _no_leak(self, *texts: str, tokens: bool = True) -> None:
        """No code appears in any text; no token either, unless the text is a result's to_dict() (tokens
        belong in their own result fields, §6.12)."""
        for text in texts:
            leaked = set(SIX_DIGITS.findall(text)) & self.codes
            assert not leaked, f"a code appears in {text!r}"
            if tokens:
                for value in (*self.real.values(), *self.passed):
                    assert value not in text, f"a token appears in {text!r}"

    def _deliveries(self) -> tuple[list[SmsMessage], list[SmsMessage]]:
        attempts = self.transport.attempts[self.seen_attempts:]
        sent = self.transport.sent[self.seen_sent:]
        self.seen_attempts, self.seen_sent = len(self.transport.attempts), len(self.transport.sent)
        for message in sent:
            assert re.fullmatch(r"[0-9]{6}", message.code), "a code is 6 ASCII digits"
            self.codes.add(message.code)
            self.received[message.member_id].append(message.code)
        return attempts, sent

    def _agree(self, expected: Outcome, error: MfaError | None, member_id: str,
               attempts: list[SmsMessage], sent: list[SmsMessage], call: str) -> None:
        actual = None if error is None else error.error_type
        event(f"{call}: {expected.error or 'success'}" + (" (sent)" if expected.sent_to else ""))
        assert actual == expected.error, f"library answered {actual!r}, the model {expected.error!r}"
        # Every transport call was permitted by the model, to the destination the model chose.
        assert [(m.to, m.member_id, m.organization_id) for m in attempts] == (
            [(expected.sent_to, member_id, ORG)] if expected.sent_to else [])
        assert len(sent) == (1 if expected.recorded else 0)

    def _bind(self, sent: list[SmsMessage], token: str | None) -> None:
        """Remember the token (None: no token) of the call that handed each recorded message to the transport:
        the IST an automatic send issued, the token passed to send, the session of a step-up check."""
        for message in sent:
            self.bound_to[id(message)] = token

    def _register(self, handle: int | None, value: str) -> None:
        assert handle is not None
        assert value, "an issued token is non-empty"
        assert value not in self.real.values(), "a fresh token never repeats an earlier one"
        self.real[handle] = value
        self.owner[handle] = self.model.tokens[handle].member_id

    def _advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.advance(seconds)

    # -- rules --------------------------------------------------------------------------------------------
    @rule(index=member_index, method=st.sampled_from(
        ["email_magic_link", "email_magic_link", "sso", "password", "discovery", "carrier_pigeon"]))
    def primary_auth(self, index: int, method: str) -> None:
        self._primary(self._member(index), method)

    def _primary(self, member_id: str, method: str = "email_magic_link") -> None:
        result, error = self._call(self.flow.authenticate_primary, ORG, member_id, method)
        attempts, sent = self._deliveries()
        expected = self.model.primary(member_id, sent[0].code if sent else None, method)
        self._agree(expected, None if error is None else error, member_id, attempts, sent, "primary")
        if result is None:
            return
        self._bind(sent, result.intermediate_session_token)  # the automatic code is bound to the new IST
        assert result.member_id == member_id
        if self.model.tokens[expected.token].kind == "ist":  # type: ignore[index]
            assert result.session_token == ""
            assert result.member_session is None
            state = self.model.members[member_id]
            if self.model.required_for_all or state.enrolled:
                assert result.mfa_required is not None
                assert result.mfa_required.secondary_auth_initiated == expected.secondary
            else:  # discovery when MFA is not owed
                assert result.mfa_required is None
            if method == "discovery":
                assert result.member_authenticated is False
            self._register(expected.token, result.intermediate_session_token)
        else:
            assert result.intermediate_session_token == ""
            assert result.mfa_required is None
            self._register(expected.token, result.session_token)

    @rule(index=member_index, phone=st.sampled_from(["none", "home", "other_member", "new0", "new1",
                                                      "premium", "jamaica"]),
          style=st.sampled_from(["e164", "spaced", "tel", "full_width", "zero_width", "padded"]),
          tokens=token_choice, pick=st.integers(0, 63))
    def send(self, index: int, phone: str, style: str, tokens: str, pick: int) -> None:
        self._send(self._member(index), phone, style, tokens, pick)

    @rule(index=member_index, count=st.integers(1, 7), phone=st.sampled_from(["none", "home", "new0"]),
          tokens=st.sampled_from(["bound", "own_ist", "none"]))
    def resend_burst(self, index: int, count: int, phone: str, tokens: str) -> None:
        """Many sends in a row: the per-member and per-phone limits (5 / 600 s) answer too_many_requests."""
        for _ in range(count):
            self._send(self._member(index), phone, "e164", tokens, 0)

    def _send(self, member_id: str, phone: str, style: str, tokens: str, pick: int) -> None:
        position = self.member_ids.index(member_id)
        e164: str | None
        if phone == "none":
            e164 = None
        elif phone == "home":
            e164 = self.model.members[member_id].phone or HOME_PHONES[position]
        elif phone == "other_member":
            other = self.member_ids[(position + 1) % len(self.member_ids)]
            e164 = self.model.members[other].phone or HOME_PHONES[self.member_ids.index(other)]
        elif phone.startswith("new"):
            e164 = NEW_PHONES[int(phone[-1])]
        else:
            e164 = "+19005550123" if phone == "premium" else "+18765550123"
        self._send_to(member_id, e164, style, tokens, pick)

    def _send_to(self, member_id: str, e164: str | None, style: str, tokens: str, pick: int) -> None:
        raw = None if e164 is None else render(e164, style)
        ist, session, kwargs = self._tokens(member_id, tokens, pick)
        before = self.flow.get_member(ORG, member_id).mfa_phone_number
        _, error = self._call(self.flow.send_sms_otp, ORG, member_id, mfa_phone_number=raw, **kwargs)
        attempts, sent = self._deliveries()
        expected = self.model.send(member_id, e164, ist, session, sent[0].code if sent else None)
        self._agree(expected, error, member_id, attempts, sent, "send")
        self._bind(sent, kwargs.get("intermediate_session_token") or kwargs.get("session_token"))
        after = self.flow.get_member(ORG, member_id).mfa_phone_number
        # The library's linked phone changes only when a phoneless member links a number by a send whose
        # message the transport recorded (a rejected delivery rolls the link back), and only to that number.
        assert before == after or (not before and after == e164 and [m.to for m in sent] == [e164])

    def _submit(self, member_id: str, code: object, tokens: str, pick: int) -> None:
        ist, session, kwargs = self._tokens(member_id, tokens, pick)
        state = self.model.members[member_id]
        locked = self.model.locked(state)
        live = self.model.live_code(state)
        live_snapshot = None if live is None else (live.value, live.token)
        used = ist if ist is not None else session
        before = self.flow.get_member(ORG, member_id)
        seen = len(self.events)
        result, error = self._call(self.flow.authenticate_sms_otp, ORG, member_id, code, **kwargs)
        attempts, sent = self._deliveries()
        expected = self.model.authenticate(member_id, code, ist, session)
        self._agree(expected, error, member_id, attempts, sent, "authenticate")
        if result is None:
            return
        # Success only with the current, unexpired, unconsumed code bound to this token; never while locked.
        assert not locked
        assert live_snapshot is not None
        assert code == live_snapshot[0]
        assert live_snapshot[1] in (None, used)
        # The same, read from the library and its transport rather than from the model: the member was not
        # locked, and the code is the one of the newest message the library handed the transport for this
        # member, recorded (not rejected), issued with no token or with the very token submitted now.
        assert not before.is_locked
        delivered = [m for m in self.transport.attempts if m.member_id == member_id]
        assert delivered, "a success without any code handed to the transport"
        newest = delivered[-1]
        assert any(m is newest for m in self.transport.sent), "the newest delivery to the member was rejected"
        assert code == newest.code
        assert self.bound_to[id(newest)] in (None, *kwargs.values())
        after = self.flow.get_member(ORG, member_id)
        assert after.mfa_phone_number == newest.to
        assert after.mfa_phone_number_verified
        assert not after.is_locked
        assert after.mfa_enrolled or not self.model.required_for_all
        self.succeeded.add(member_id)
        # §6.9: the success reset the stored failure counter; a rule may go on to count new failures before the
        # next invariant check, so the monotonicity baseline restarts here.
        guard, _ = peek(self.flow, member_id)
        assert guard is None or guard.failures == 0, guard
        self.last_failures[member_id] = 0
        assert result.member_id == member_id
        assert result.member_session is not None
        if ist is not None:
            assert result.session_token != self.real[ist], "a fresh session token, never the IST"
            self._register(expected.token, result.session_token)
        else:  # the session keeps its token; a step-up completes (§6.10) exactly when the model says one was due
            assert session is not None
            assert result.session_token == self.real[session]
            t = self.model.tokens[session]
            assert result.member_session.last_accessed_at.timestamp() == t.last_accessed
            assert result.member_session.expires_at.timestamp() == t.expires_at
            names = [e.name for e in self.events[seen:]]
            assert ("session.step_up_completed" in names) == bool(expected.step_up), names
            if expected.step_up:
                event("authenticate: step-up completed")

    @rule(index=member_index, which=st.sampled_from(["current", "current", "previous", "other", "random"]),
          tokens=submit_token_choice, pick=st.integers(0, 63), digits=six_digits)
    def submit(self, index: int, which: str, tokens: str, pick: int, digits: str) -> None:
        member_id = self._member(index)
        code: str = digits
        state = self.model.members[member_id]
        history = self.received[member_id]
        if which == "current" and state.code is not None and state.code.value is not None:
            code = state.code.value
        elif which == "current" and history:
            code = history[-1]
        elif which == "previous" and len(history) >= 2:
            code = history[pick % (len(history) - 1)]
        elif which == "other":
            others = [c for m, codes in self.received.items() if m != member_id for c in codes]
            code = others[-1] if others else digits
        self._submit(member_id, code, tokens, pick)

    @rule(index=member_index, wrong=st.lists(six_digits, min_size=1, max_size=6))
    def wrong_burst(self, index: int, wrong: list[str]) -> None:
        member_id = self._member(index)
        for code in wrong:
            self._submit(member_id, code, "bound", 0)

    @rule(index=member_index, wrong=st.lists(six_digits, min_size=1, max_size=6))
    def login_then_wrong_codes(self, index: int, wrong: list[str]) -> None:
        """Primary authentication (automatic send) then wrong codes: the road to the lock (§6.6)."""
        member_id = self._member(index)
        self._primary(member_id)
        for code in wrong:
            self._submit(member_id, code, "bound", 0)

    @rule(index=member_index, delay=st.sampled_from([0, 0, 7, 63, 119, 126]),
          tokens=st.sampled_from(["bound", "bound", "other_own", "own_session"]))
    def login_then_right_code(self, index: int, delay: int, tokens: str) -> None:
        """The happy path, sometimes late (126 s: expired) or with a token the code is not bound to."""
        member_id = self._member(index)
        self._primary(member_id)
        self._advance(delay)
        code = self.model.members[member_id].code
        if code is not None and code.value is not None:
            self._submit(member_id, code.value, tokens, 0)

    @rule(index=member_index, tokens=st.sampled_from(["own_session", "own_ist", "none"]),
          then=st.sampled_from(["bound", "other_own", "own_session", "own_ist"]))
    def send_then_right_code(self, index: int, tokens: str, then: str) -> None:
        """An explicit send (to the linked phone) and its code, redeemed with the same or another token."""
        member_id = self._member(index)
        self._send(member_id, "none", "e164", tokens, 0)
        code = self.model.members[member_id].code
        if code is not None and code.value is not None:
            self._submit(member_id, code.value, then, 0)

    def _unlinked_phones(self) -> list[str]:
        linked = {state.phone for state in self.model.members.values()}
        return [p for p in (*NEW_PHONES, *PUMPED_PHONES) if p not in linked]

    def _new_phoneless_member(self) -> str:
        """A member put in the directory mid-run (the trusted admin plane): no phone, no factor, not enrolled."""
        mid = f"{PUMP_PREFIX}{len(self.model.members)}"
        self.flow.directory.put_member(Member(mid, ORG, email_address=f"{mid}@example.com"))
        self.model.members[mid] = MemberState(mid)
        self.received[mid] = []
        self.last_failures[mid] = 0
        self.was_locked[mid] = False
        return mid

    @precondition(lambda self: self.model.armed is None and bool(self._unlinked_phones())
                  and sum(m.startswith(PUMP_PREFIX) for m in self.model.members) < 2 * 4)
    @rule(rejected=st.integers(1, 4), sends=st.integers(1, 5), pick=st.integers(0, 63))
    def one_number_many_members(self, rejected: int, sends: int, pick: int) -> None:
        """SMS pumping of one number nobody has linked through two new phoneless members (so no token is
        needed, §6.4): rejected deliveries roll the link back but stay counted, so the per-phone limit (across
        members) bites before the per-member one when more than 5 sends reach the number (§6.7). Up to four
        times per run; the new members then stay in the model, checked by every invariant."""
        first, second = self._new_phoneless_member(), self._new_phoneless_member()
        phones = self._unlinked_phones()
        e164 = phones[pick % len(phones)]
        for _ in range(rejected):
            self.fail_next_delivery("rejected")
            self._send_to(first, e164, "e164", "none", 0)
            if self.model.armed is not None:  # the send was refused before delivery: disarm by a delivery
                break
        for _ in range(sends):
            self._send_to(second, e164, "e164", "none", 0)
        event(f"one number, many members: {len(self.model.phone_sends.get(e164, []))} sends")

    # -- sessions and the inactivity step-up (§6.10) --------------------------------------------------------
    def _submit_wrong(self, member_id: str, digits: str, times: int) -> None:
        """Submit ``times`` codes other than the live one with the member's newest session."""
        for _ in range(times):
            live = self.model.members[member_id].code
            wrong = digits if live is None or digits != live.value else f"{(int(digits) + 1) % 10**6:06d}"
            self._submit(member_id, wrong, "own_session", 0)

    def _sessions(self) -> list[int]:
        return sorted(h for h in self.real if self.model.tokens[h].kind == "session")

    def _check_session(self, handle: int | None, kwargs: dict[str, str], *, jwt: bool = False) -> None:
        """authenticate_session on both sides: the answer, the automatic step-up send (to the session's member,
        bound to the session), the reported step-up, the session's times, the step-up event."""
        t = None if handle is None else self.model.tokens.get(handle)
        member_id = "" if t is None else t.member_id
        seen = len(self.events)
        result, error = self._call(self.flow.authenticate_session, **kwargs)
        attempts, sent = self._deliveries()
        expected = self.model.check_session(handle, sent[0].code if sent else None, jwt=jwt)
        self._agree(expected, error, member_id, attempts, sent, "session check")
        if result is None:
            return
        assert t is not None
        self._bind(sent, kwargs["session_token"])
        event(f"session check: step_up_required={expected.step_up}, secondary={expected.secondary}")
        assert result.step_up_required == expected.step_up
        assert result.secondary_auth_initiated == expected.secondary
        assert result.member_session.member_id == member_id
        assert result.member_session.last_accessed_at.timestamp() == t.last_accessed
        assert result.member_session.expires_at.timestamp() == t.expires_at
        names = [e.name for e in self.events[seen:]]
        assert ("session.step_up_required" in names) == expected.step_up, names
        assert names.count("otp.sent") == (1 if expected.secondary == "sms_otp" and sent else 0), names

    @precondition(lambda self: bool(self._sessions()))
    @rule(pick=st.integers(0, 63), idle=st.sampled_from([0, 7, 63, 1806, 1806, 1813, 3605]))
    def session_check(self, pick: int, idle: int) -> None:
        """authenticate_session on any session issued so far (any member's), after some idle time."""
        self._advance(idle)
        sessions = self._sessions()
        handle = sessions[pick % len(sessions)]
        self._check_session(handle, {"session_token": self.real[handle]})

    @rule(kind=st.sampled_from(["none", "jwt", "session_and_jwt", "forged", "ist"]), pick=st.integers(0, 63))
    def session_check_refused(self, kind: str, pick: int) -> None:
        """authenticate_session without exactly one session token: no_session_arguments,
        too_many_session_arguments, unable_to_parse_session_jwt, session_not_found (an IST is not a session)."""
        jwt = FORGED_TOKEN.replace("token", "jwt")
        if kind == "none":
            self._check_session(None, {})
        elif kind == "jwt":
            self._check_session(None, {"session_jwt": jwt}, jwt=True)
        elif kind == "session_and_jwt" and self._sessions():
            handle = self._sessions()[pick % len(self._sessions())]
            self._check_session(handle, {"session_token": self.real[handle], "session_jwt": jwt}, jwt=True)
        elif kind == "ist" and any(self.model.tokens[h].kind == "ist" for h in self.real):
            ists = sorted(h for h in self.real if self.model.tokens[h].kind == "ist")
            self._check_session(ists[pick % len(ists)], {"session_token": self.real[ists[pick % len(ists)]]})
        else:
            self._check_session(-1, {"session_token": FORGED_TOKEN})

    @rule(index=member_index, idle=st.sampled_from([1806, 1806, 1813, 1799, 7]),
          then=st.sampled_from(["right_code", "right_code", "check_again", "other_token", "wrong_code", "lock"]),
          digits=six_digits)
    def login_idle_step_up(self, index: int, idle: int, then: str, digits: str) -> None:
        """A login (primary authentication and its code, or a session at once when MFA is not owed), idle time
        (1799 s and 1806 s bracket the 1800 s timeout; no call lands on it), authenticate_session (a step-up and
        its automatic code when the member has an active factor), then: the step-up code with the session, a
        repeated check (nothing more is sent while the code is live), the code with another token of the member
        (a wrong code), a wrong code, or wrong codes and checks until the member is locked (the check then
        reports the step-up and sends nothing); then a last check."""
        member_id = self._member(index)
        self._primary(member_id)
        code = self.model.members[member_id].code
        if code is not None and code.value is not None:
            self._submit(member_id, code.value, "bound", 0)
        handle = self._latest(member_id, "session")
        if handle is None:
            return  # no session (a refused or failed login, or a lock): nothing to step up
        self._advance(idle)
        self._check_session(handle, {"session_token": self.real[handle]})
        step_up = self.model.members[member_id].code
        bound_here = step_up is not None and step_up.token == handle and step_up.value is not None
        if then == "check_again":
            self._check_session(handle, {"session_token": self.real[handle]})
        elif then == "lock":
            for _ in range(3):  # 5 wrong codes kill a code, the next check sends another; 10 failures lock
                self._submit_wrong(member_id, digits, 5)
                self._check_session(handle, {"session_token": self.real[handle]})
        elif then == "wrong_code" or not bound_here:
            self._submit_wrong(member_id, digits, 1)
        else:
            assert step_up is not None
            self._submit(member_id, step_up.value, "own_session" if then == "right_code" else "other_own", 0)
        self._check_session(handle, {"session_token": self.real[handle]})

    @rule(index=member_index)
    def submit_at_expiry_instant(self, index: int) -> None:
        """Advance to exactly sent_at + otp_ttl and submit the right code: no longer valid (spec §6.5)."""
        member_id = self._member(index)
        live = self.model.live_code(self.model.members[member_id])
        if live is None or live.value is None:
            return
        self._advance(live.sent_at + OTP_TTL - self.model.now)
        self._submit(member_id, live.value, "bound", 0)
        off_lattice = (self.model.now - self.start) % LATTICE
        if off_lattice:
            self._advance(LATTICE - off_lattice)

    @rule(seconds=st.sampled_from(STEPS))
    def advance_clock(self, seconds: int) -> None:
        self._advance(seconds)

    @rule(index=member_index, seconds=st.sampled_from([602, 1806, 3605]),
          tokens=st.sampled_from(["own_session", "own_ist"]))
    def use_token_later(self, index: int, seconds: int, tokens: str) -> None:
        """Let time pass, then send with an old IST (600 s) or session (60 min): expiry of tokens."""
        self._advance(seconds)
        self._send(self._member(index), "none", "e164", tokens, 0)

    @precondition(lambda self: self.model.armed is None)
    @rule(outcome=st.sampled_from(["rejected", "unknown"]))
    def fail_next_delivery(self, outcome: str) -> None:
        self.transport.fail_next(outcome)  # type: ignore[arg-type]
        self.model.armed = outcome

    @precondition(lambda self: self.model.armed is None)
    @rule(outcome=st.sampled_from(["rejected", "unknown"]), index=member_index,
          phone=st.sampled_from(["none", "home", "new0", "new1"]), tokens=token_choice)
    def failed_delivery_send(self, outcome: str, index: int, phone: str, tokens: str) -> None:
        """A send whose delivery fails: counted, previous code superseded, a new link rolled back (§6.11)."""
        self.fail_next_delivery(outcome)
        self._send(self._member(index), phone, "e164", tokens, 0)

    # -- invariants ---------------------------------------------------------------------------------------
    @invariant()
    def merged_member_view_agrees(self) -> None:
        for member_id, state in self.model.members.items():
            view = self.flow.get_member(ORG, member_id)
            assert view.mfa_phone_number == state.phone
            assert view.mfa_phone_number_verified == state.verified
            assert view.mfa_enrolled == state.enrolled
            assert view.is_locked == self.model.locked(state)
            self._no_leak(repr(view))

    @invariant()
    def stored_counters_and_code_agree(self) -> None:
        """At most one live code per member (the store holds one challenge), with the model's attempts; the
        failure counter equals the model's and only falls on success or when a lock ends."""
        now = self.model.now
        for member_id, state in self.model.members.items():
            guard, code = peek(self.flow, member_id)
            failures = 0
            if guard is not None:
                lock_over = guard.state.value == "locked" and now >= guard.locked_until
                failures = 0 if lock_over else guard.failures
            assert failures == state.failures, (member_id, failures, state.failures)
            locked = self.model.locked(state)
            if failures < self.last_failures[member_id]:  # monotone except on success or when a lock ends
                assert failures == 0
                assert member_id in self.succeeded or (self.was_locked[member_id] and not locked)
            self.was_locked[member_id] = locked
            live = self.model.live_code(state)
            if self.model.locked(state):
                continue  # whether locking kills a live code is not specified; the lock outlives it anyway
            stored_live = (code is not None and code.state.value == "sent" and now < code.expires_at)
            assert stored_live == (live is not None), f"{member_id}: live code in store {stored_live}"
            if live is not None:
                assert code.attempts == live.attempts
                assert code.sent_at == live.sent_at
            self.last_failures[member_id] = failures
        self.succeeded.clear()

    @invariant()
    def no_code_in_events_or_state(self) -> None:
        for emitted in self.events[self.seen_events:]:
            self._no_leak(repr(emitted), str(emitted))
        self.seen_events = len(self.events)
        self._no_leak(repr(self.flow), repr(self.flow.store), repr(self.transport), *self.log.lines)
        self.log.lines.clear()


TestStatefulFlow = FlowMachine.TestCase
