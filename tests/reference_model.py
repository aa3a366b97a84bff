"""A reference model of one organization's SMS-OTP flow, written from the spec's rules only.

It imports nothing from mfa_flow. It covers what the stateful test drives (spec §5 order of checks, §6.2
phone resolution in link-on-send mode, §6.4 token rules, §6.5 codes, §6.6 lock, §6.7 limits, §6.8 the
automatic send, §6.9 success, §6.10 the inactivity step-up, §6.11 delivery outcomes) under the default
``Policy()``. Tokens are small
integer handles; the test maps them to the library's token strings. Codes are not generated here: the test
reads the code the transport received and hands it to the model, which only decides whether a submission
matches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OTP_TTL = 120.0
IST_TTL = 600.0
SESSION_TTL = 60 * 60.0  # default session_duration_minutes = 60
MAX_ATTEMPTS_PER_CODE = 5
LOCKOUT_THRESHOLD = 10
LOCKOUT_DURATION = 3600.0
INACTIVITY_TIMEOUT = 1800.0
SEND_LIMIT_COUNT, SEND_LIMIT_WINDOW = 5, 600.0  # per member and per phone number
PRIMARY_METHODS = frozenset({"email_magic_link", "sso", "oauth", "password", "email_otp", "discovery"})


@dataclass
class Code:
    value: str | None
    sent_at: float
    token: int | None  # the handle it is bound to; None: redeemable by any valid token of the member
    attempts: int = 0


@dataclass
class MemberState:
    member_id: str
    phone: str = ""
    verified: bool = False
    totp: bool = False
    enrolled: bool = False
    failures: int = 0
    locked_until: float | None = None
    code: Code | None = None
    sends: list[float] = field(default_factory=list)


@dataclass
class Token:
    kind: str  # "ist" | "session"
    member_id: str
    expires_at: float
    factors: frozenset[str]
    last_accessed: float  # sessions: §6.10 inactivity is measured from here
    consumed: bool = False


@dataclass(frozen=True)
class Outcome:
    error: str | None = None  # an error_type, or None for success
    sent_to: str | None = None  # an admitted send: the transport was called with this destination
    recorded: bool = False  # ... and the message was recorded (delivered, or outcome unknown)
    token: int | None = None  # the IST or session the call issued (or, for a step-up, kept)
    secondary: str | None = None  # secondary_auth_initiated of a primary authentication or a session check
    step_up: bool | None = None  # step_up_required of a session check


class RefusedError(Exception):
    def __init__(self, error_type: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type


class FlowModel:
    """One organization. ``refused_destinations`` maps E.164 numbers to the §6.1 error their send gets."""

    def __init__(
        self, members: list[MemberState], *, now: float, required_for_all: bool,
        refused_destinations: dict[str, str],
    ) -> None:
        self.members = {m.member_id: m for m in members}
        self.now = now
        self.required_for_all = required_for_all
        self.refused_destinations = refused_destinations
        self.tokens: dict[int, Token] = {}
        self.phone_sends: dict[str, list[float]] = {}
        self.armed: str | None = None  # the transport's next delivery outcome: "rejected" | "unknown" | None

    # -- time and derived state -------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.now += seconds

    def locked(self, m: MemberState) -> bool:
        if m.locked_until is not None and self.now >= m.locked_until:
            m.locked_until, m.failures = None, 0  # §6.6: when the lock ends the counter is 0
        return m.locked_until is not None

    def live_code(self, m: MemberState) -> Code | None:
        if m.code is not None and self.now >= m.code.sent_at + OTP_TTL:
            m.code = None  # lazy expiry (§7)
        return m.code

    def active_factor(self, m: MemberState) -> bool:
        return bool(m.phone and m.verified) or m.totp

    def _issue(self, kind: str, m: MemberState, ttl: float, factors: frozenset[str]) -> int:
        handle = len(self.tokens)
        self.tokens[handle] = Token(kind, m.member_id, self.now + ttl, factors, last_accessed=self.now)
        return handle

    def needs_step_up(self, t: Token) -> bool:
        """§6.10: a session idle strictly longer than the timeout, of a member with an active MFA factor."""
        return (t.kind == "session" and self.now - t.last_accessed > INACTIVITY_TIMEOUT
                and self.active_factor(self.members[t.member_id]))

    # -- shared checks ----------------------------------------------------------------------------------
    def _token(self, m: MemberState, ist: int | None, session: int | None) -> int | None:
        """§5 step 3: validity, then ownership. A handle the model never issued is an unknown token."""
        for handle, kind, missing in ((ist, "ist", "intermediate_session_not_found"),
                                      (session, "session", "session_not_found")):
            if handle is None:
                continue
            t = self.tokens.get(handle)
            if t is None or t.kind != kind or t.consumed or self.now >= t.expires_at:
                raise RefusedError(missing)
            if t.member_id != m.member_id:
                raise RefusedError("member_session_member_id_mismatch")
            return handle
        return None

    def _check_limits(self, m: MemberState, dest: str) -> None:
        start = self.now - SEND_LIMIT_WINDOW
        for times in (m.sends, self.phone_sends.get(dest, [])):
            if sum(1 for t in times if t > start) >= SEND_LIMIT_COUNT:
                raise RefusedError("too_many_requests")

    def _admit(
        self, m: MemberState, dest: str, token: int | None, code: str | None, *, link: bool
    ) -> Outcome:
        """Count the send, supersede the previous code, write the new one (and the link), then deliver."""
        m.sends.append(self.now)
        self.phone_sends.setdefault(dest, []).append(self.now)
        m.code = None
        if link:
            m.phone, m.verified = dest, False
        outcome, self.armed = self.armed, None
        if outcome == "rejected":  # surely not sent: the code is discarded and the link rolled back
            if link:
                m.phone = ""
            return Outcome(error="downstream_carrier_error", sent_to=dest)
        m.code = Code(code, self.now, token)
        error = "downstream_carrier_error" if outcome == "unknown" else None
        return Outcome(error=error, sent_to=dest, recorded=True)

    # -- the public calls -------------------------------------------------------------------------------
    def primary(self, member_id: str, code: str | None, method: str = "email_magic_link") -> Outcome:
        """§5 primary order: method, then lock; §6.8 MFA owed, the automatic send; discovery only an IST."""
        m = self.members[member_id]
        if method not in PRIMARY_METHODS:
            return Outcome(error="bad_request")
        if self.locked(m):
            return Outcome(error="user_lock_limit_reached")
        if method == "discovery":
            return Outcome(token=self._issue("ist", m, IST_TTL, frozenset({"primary"})))
        if not (self.required_for_all or m.enrolled):
            return Outcome(token=self._issue("session", m, SESSION_TTL, frozenset({"primary"})))
        ist = self._issue("ist", m, IST_TTL, frozenset({"primary"}))
        if not m.phone:  # no SMS conditions: no automatic send
            return Outcome(token=ist)
        try:
            self._check_limits(m, m.phone)
        except RefusedError:
            return Outcome(token=ist)
        sent = self._admit(m, m.phone, ist, code, link=False)
        return Outcome(token=ist, sent_to=sent.sent_to, recorded=sent.recorded,
                       secondary="sms_otp" if sent.error is None else None)

    def send(
        self, member_id: str, phone: str | None, ist: int | None, session: int | None, code: str | None
    ) -> Outcome:
        m = self.members[member_id]
        try:
            dest, token, link = self._send_checks(m, phone, ist, session)
        except RefusedError as exc:
            return Outcome(error=exc.error_type)
        return self._admit(m, dest, token, code, link=link)

    def _send_checks(
        self, m: MemberState, phone: str | None, ist: int | None, session: int | None
    ) -> tuple[str, int | None, bool]:
        """§5 send steps 1-10 (no hooks configured); returns (destination, token, whether it links)."""
        if ist is not None and session is not None:
            raise RefusedError("too_many_session_arguments")
        token = self._token(m, ist, session)
        if self.locked(m):
            raise RefusedError("user_lock_limit_reached")
        link = False
        if m.phone:
            if phone is not None and phone != m.phone:
                raise RefusedError("duplicate_member_phone_number_for_member")
            dest = m.phone
        elif phone is None:
            raise RefusedError("member_phone_number_not_found")
        elif any(o.phone == phone for o in self.members.values() if o is not m):
            raise RefusedError("duplicate_member_phone_number")
        else:
            dest, link = phone, True
        if self.active_factor(m):  # §6.4
            if token is None:
                raise RefusedError("no_associated_session_passed_in")
            if link and not self._factor_bearing(m, token):
                raise RefusedError("insufficient_factors")
        if dest in self.refused_destinations:
            raise RefusedError(self.refused_destinations[dest])
        self._check_limits(m, dest)
        return dest, token, link

    def _factor_bearing(self, m: MemberState, handle: int) -> bool:
        """A token carrying an active factor of this member and not needing a step-up (§6.4, §6.10)."""
        t = self.tokens[handle]
        if self.needs_step_up(t):
            return False
        return ("sms" in t.factors and bool(m.phone) and m.verified) or ("totp" in t.factors and m.totp)

    def authenticate(
        self, member_id: str, submitted: object, ist: int | None, session: int | None
    ) -> Outcome:
        m = self.members[member_id]
        try:
            token = self._authenticate_checks(m, submitted, ist, session)
        except RefusedError as exc:
            return Outcome(error=exc.error_type)
        t = self.tokens[token]
        step_up = self.needs_step_up(t)  # judged when the token is checked, before this success changes m
        m.code, m.failures, m.verified = None, 0, True  # §6.9
        if self.required_for_all:
            m.enrolled = True
        if t.kind == "ist":
            t.consumed = True
            return Outcome(token=self._issue("session", m, SESSION_TTL, t.factors | {"sms"}))
        t.factors |= {"sms"}
        if step_up:  # §6.10: a successful step-up sets last_accessed_at = now (expires_at unchanged)
            t.last_accessed = self.now
        return Outcome(token=token, step_up=step_up)

    def check_session(self, session: int | None, code: str | None, *, jwt: bool = False) -> Outcome:
        """``authenticate_session``: exactly one token, no JWT, a known unexpired session (rules.md), then
        §6.10. ``session`` is a model handle (an IST's handle, or one never issued, is not a session)."""
        if session is None and not jwt:
            return Outcome(error="no_session_arguments")
        if session is not None and jwt:
            return Outcome(error="too_many_session_arguments")
        if jwt:
            return Outcome(error="unable_to_parse_session_jwt")
        t = self.tokens.get(session)  # type: ignore[arg-type]
        if t is None or t.kind != "session" or self.now >= t.expires_at:
            return Outcome(error="session_not_found")
        m = self.members[t.member_id]
        if not self.needs_step_up(t):
            t.last_accessed = self.now
            return Outcome(token=session, step_up=False)
        # It needs a step-up: last_accessed is left alone. A locked member is told so and sent nothing (the
        # lock killed any live code, §6.6). A live code bound to this session is its step-up code: nothing
        # more is sent and the code is reported. Otherwise the SMS conditions of §6.8 (a linked phone; SMS is
        # allowed and no other default method in the test's organization) decide the automatic send, which
        # passes the destination checks and the limits like every send and is bound to the session.
        if self.locked(m):
            return Outcome(token=session, step_up=True)
        live = self.live_code(m)
        if live is not None and live.token == session:
            return Outcome(token=session, step_up=True, secondary="sms_otp")
        if not m.phone or m.phone in self.refused_destinations:
            return Outcome(token=session, step_up=True)
        try:
            self._check_limits(m, m.phone)
        except RefusedError:
            return Outcome(token=session, step_up=True)
        sent = self._admit(m, m.phone, session, code, link=False)
        return Outcome(token=session, step_up=True, sent_to=sent.sent_to, recorded=sent.recorded,
                       secondary="sms_otp" if sent.error is None else None)

    def _authenticate_checks(
        self, m: MemberState, submitted: object, ist: int | None, session: int | None
    ) -> int:
        """§5 authenticate steps 1-6; a wrong code counts before it is refused (§6.5, §6.6)."""
        if ist is None and session is None:
            raise RefusedError("no_session_arguments")
        if ist is not None and session is not None:
            raise RefusedError("too_many_session_arguments")
        token = self._token(m, ist, session)
        assert token is not None
        if self.locked(m):
            raise RefusedError("user_lock_limit_reached")
        code = self.live_code(m)
        if code is None:
            raise RefusedError("unable_to_auth_otp_code")
        shaped = isinstance(submitted, str) and len(submitted) == 6 and submitted.isascii()
        if shaped and submitted.isdigit() and submitted == code.value and code.token in (None, token):
            return token
        code.attempts += 1
        m.failures += 1
        if code.attempts >= MAX_ATTEMPTS_PER_CODE:
            m.code = None  # dead
        if m.failures >= LOCKOUT_THRESHOLD:  # the same failure may also kill the code; the lock answers
            m.locked_until = self.now + LOCKOUT_DURATION
            m.code = None  # §6.6 (docs/rules.md): the lock kills the live code
            raise RefusedError("user_lock_limit_reached")
        raise RefusedError("otp_code_not_found")
