"""What each public call costs through MfaFlow, against the least code that does the same work.

    python3 benchmarks/bench_flow.py                # 7 rounds; 1000 logins and 350 of each other call a round
    python3 benchmarks/bench_flow.py --clock wall   # elapsed time instead of the thread's CPU time
    python3 benchmarks/bench_flow.py --quick        # a smoke run of a few seconds

Four measurements, each of ``MfaFlow`` on the memory store with ``FakeTransport`` and the default policy, for
members with ``mfa_enrolled`` and a verified phone, against a hand-written minimum (``minimal_*`` below):

- **full login**: ``authenticate_primary`` (which sends the first code) then ``authenticate_sms_otp`` with that
  code and the IST, which issues the session;
- **send_sms_otp (resend)**: ``send_sms_otp`` with the member's session (no number given: the linked one);
- **authenticate_session (fresh)**: on a session used less than ``inactivity_timeout`` ago;
- **step-up**: ``authenticate_session`` on a session idle for longer, which sends the step-up code, then
  ``authenticate_sms_otp`` with that code and the session.

Cold numbers: every timed call is on a member and a phone number that no other call of the process uses, so no
cache anywhere helps; numbers are +1 NPA 555-01XX (the range reserved for fiction) across every US and Canadian
area code that phonenumbers accepts as a valid fixed-line-or-mobile number, neighbours split between the two
sides (a Canadian number costs phonenumbers two to three times a US one). What a call starts from is made
outside the timed region on both sides: the directory, and for the last three a full login each (for the step-up
on a clock set back by more than ``inactivity_timeout``, so its sessions are idle). Each round times every call
on both sides, alternating which side goes first; a figure is the median over the rounds of (round time / calls).
Time is the thread's CPU time by default: nothing timed waits on I/O, so on an idle machine it equals the elapsed
time, and on a shared one it leaves out the time the process waits for a core (``--clock wall`` to compare).
Target (issue 11): a full login through MfaFlow <= 1.5x the minimal.

The minimal does exactly the work the rules cannot do without, and nothing else:

- per send, one ``phonenumbers.parse`` + ``is_valid_number`` + ``region_code_for_number`` + ``number_type`` +
  E.164 ``format_number`` of the member's stored number (every send checks its destination); the sliding send
  windows per member and per phone (``bisect`` prunes a sorted list of send times); a 6-digit code from
  ``secrets.randbelow`` kept only as its ``hmac.digest`` (HMAC-SHA256); delivery is a tuple appended to a list;
- an IST or a session is ``secrets.token_urlsafe(32)`` stored under its ``hashlib.sha256(...).digest()``; a token
  passed in is looked up by that digest and checked for its owner and expiry; a code is checked with
  ``hmac.compare_digest``, for expiry and for being bound to the token it came with, then consumed with the IST;
- a fresh session gets its last access set; an idle one gets a step-up code unless one bound to it is live;
- the clock read once per call (two per login), because every expiry needs it (the timed loop reads it and
  passes the value, as MfaFlow reads it once per call and hands it to its rules);
- state in flat dicts keyed by a member id, an E.164 number (str) or a token's digest (bytes); records are tuples
  (a session a list, for its last access); no classes, no events, no store, no results beyond the tokens; a
  refusal is a ValueError (the benchmark meets none).

It leaves out what the benchmark's members always pass and costs a dict read or a comparison each: the
organization, the member's status and enrolment, the lock, the organization's MFA methods, the factors a
session carries, the unsupported-region list, the cooldown. Leaving them out only makes the minimal faster, so
the ratios err against MfaFlow. MfaFlow's own number parsing (``mfa_flow._numbers``) is faster than the public
phonenumbers functions the minimal calls: that gain is MfaFlow's to keep.

Memory: bytes per pending login = the tracemalloc delta over 10,000 pending logins (primary authentication with
the automatic send, not yet authenticated) / 10,000, with a gateway that drops messages (so no list of messages
is counted) and the directory filled before tracemalloc starts. Target: <= 2 KB.
"""

from __future__ import annotations

import argparse
import gc
import platform
import secrets
import statistics
import sys
import time
import tracemalloc
from bisect import bisect_right
from collections.abc import Callable, Iterator
from functools import partial
from hashlib import sha256
from hmac import compare_digest
from hmac import digest as hmac_digest
from importlib import metadata
from pathlib import Path
from secrets import randbelow, token_urlsafe
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import phonenumbers
from phonenumbers import format_number, is_valid_number, number_type, parse, region_code_for_number

from mfa_flow import Member, MfaFlow, Organization
from mfa_flow.clock import SystemClock
from mfa_flow.policy import Policy
from mfa_flow.testing import FakeTransport
from mfa_flow.transports import SmsGateway, SmsMessage

ORG = "organization-bench-1"
METHOD = "email_magic_link"
REGIONS = frozenset({"US", "CA"})
BLOCKED_TYPES = frozenset({
    phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.UAN,
    phonenumbers.PhoneNumberType.VOICEMAIL,
})
E164 = phonenumbers.PhoneNumberFormat.E164
POLICY = Policy()
IDLE = POLICY.inactivity_timeout + 1.0  # how far back the step-up's sessions are made
TARGET = 1.5  # a full login through MfaFlow against the minimal (issue 11)


# ------------------------------------------------------------------------------------------ phone numbers


def fictional_numbers() -> Iterator[str]:
    """+1 NPA 555-0101 .. 555-0199, NPA by NPA, in a fixed order.

    An area code is used when its probe number 555-0100 (never handed out) is a valid US or CA
    fixed-line-or-mobile number for phonenumbers; every 555-01XX of such an area code is too.
    """
    for npa in range(200, 1000):
        probe = phonenumbers.parse(f"+1{npa}5550100", None)
        if not phonenumbers.is_valid_number(probe):
            continue
        if phonenumbers.region_code_for_number(probe) not in REGIONS:
            continue
        if phonenumbers.number_type(probe) != phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE:
            continue
        for line in range(1, 100):
            yield f"+1{npa}55501{line:02d}"


class NumberPool:
    """Hands out each number once."""

    def __init__(self) -> None:
        self._numbers = fictional_numbers()
        self.used = 0

    def take(self, n: int) -> list[str]:
        out = [next(self._numbers, "") for _ in range(n)]
        if not all(out):
            raise SystemExit(f"bench_flow: ran out of fictional numbers after {self.used} (ask for fewer calls)")
        self.used += n
        return out

    def take_pairs(self, n: int) -> tuple[list[str], list[str]]:
        """``n`` numbers for each side, neighbours split between them: phonenumbers takes two to three times
        as long over a Canadian number as over a US one (it tries the +1 regions in turn), so both sides get
        the same area codes."""
        both = self.take(2 * n)
        return both[0::2], both[1::2]


# --------------------------------------------------------------------------------------------------- ours


def add_members(flow: MfaFlow, phones: list[str], prefix: str) -> list[str]:
    """Members with mfa_enrolled and a verified phone, put in the directory (outside any timed region)."""
    ids = []
    for i, phone in enumerate(phones):
        member_id = f"member-{prefix}-{i:06d}"
        flow.directory.put_member(Member(member_id, ORG, mfa_enrolled=True, mfa_phone_number=phone,
                                         mfa_phone_number_verified=True))
        ids.append(member_id)
    return ids


def new_flow(transport: SmsGateway, **options: Any) -> MfaFlow:
    """A flow with the benchmark's organization; ``options`` go to MfaFlow (bench_stores: store, secret_key)."""
    flow = MfaFlow(transport=transport, **options)
    flow.directory.put_organization(Organization(ORG, organization_slug="bench"))
    return flow


class SetBackClock(SystemClock):
    """The system clock, less ``back`` seconds: the step-up's sessions are made in the past."""

    def __init__(self) -> None:
        self.back = 0.0

    def now(self) -> float:
        return time.time() - self.back


Sessions = list[tuple[str, str]]  # (member id, session token)
Timer = Callable[[], int]  # nanoseconds


def ours_sessions(flow: MfaFlow, transport: FakeTransport, member_ids: list[str]) -> Sessions:
    """A full login for each member (set-up, untimed)."""
    out = []
    for member_id in member_ids:
        ist = flow.authenticate_primary(ORG, member_id, METHOD).intermediate_session_token
        out.append((member_id, flow.authenticate_sms_otp(ORG, member_id, transport.sent[-1].code,
                                                         intermediate_session_token=ist).session_token))
    return out


def ours_login(flow: MfaFlow, transport: FakeTransport, member_ids: list[str], timer: Timer) -> int:
    """Full logins; returns the elapsed nanoseconds."""
    sent = transport.sent
    primary = flow.authenticate_primary
    authenticate = flow.authenticate_sms_otp
    before = len(sent)
    started = timer()
    for member_id in member_ids:
        ist = primary(ORG, member_id, METHOD).intermediate_session_token
        session_token = authenticate(ORG, member_id, sent[-1].code, intermediate_session_token=ist).session_token
    elapsed = timer() - started
    assert session_token
    assert len(sent) - before == len(member_ids), "every login must have sent exactly one code"
    return elapsed


def ours_resend(flow: MfaFlow, transport: FakeTransport, batch: Sessions, timer: Timer) -> int:
    sent = transport.sent
    send = flow.send_sms_otp
    before = len(sent)
    started = timer()
    for member_id, session_token in batch:
        send(ORG, member_id, session_token=session_token)
    elapsed = timer() - started
    assert len(sent) - before == len(batch), "every resend must have sent exactly one code"
    return elapsed


def ours_check(flow: MfaFlow, transport: FakeTransport, batch: Sessions, timer: Timer) -> int:
    check = flow.authenticate_session
    before = len(transport.sent)
    started = timer()
    for _, session_token in batch:
        result = check(session_token=session_token)
    elapsed = timer() - started
    assert not result.step_up_required
    assert len(transport.sent) == before, "a fresh session sends nothing"
    return elapsed


def ours_step_up(flow: MfaFlow, transport: FakeTransport, batch: Sessions, timer: Timer) -> int:
    sent = transport.sent
    check = flow.authenticate_session
    authenticate = flow.authenticate_sms_otp
    before = len(sent)
    started = timer()
    for member_id, session_token in batch:
        initiated = check(session_token=session_token).secondary_auth_initiated
        authenticate(ORG, member_id, sent[-1].code, session_token=session_token)
    elapsed = timer() - started
    assert initiated == "sms_otp"
    assert len(sent) - before == len(batch), "every step-up must have sent exactly one code"
    return elapsed


# -------------------------------------------------------------------------------------------- the minimal
# Flat dicts keyed by str (a member id, an E.164 number) or by a token's SHA-256 digest (bytes); the policy's
# defaults and the library functions bound to module names, so that the minimal reads no attribute it can avoid.

KEY = secrets.token_bytes(32)
OTP_TTL, IST_TTL, SESSION_TTL = POLICY.otp_ttl, POLICY.ist_ttl, POLICY.default_session_minutes * 60
INACTIVITY = POLICY.inactivity_timeout
(MEMBER_SENDS, MEMBER_WINDOW), (PHONE_SENDS, PHONE_WINDOW) = POLICY.send_limit_per_member, POLICY.send_limit_per_phone
directory: dict[str, str] = {}  # member id -> stored number
ists: dict[bytes, tuple[str, float]] = {}  # -> (member id, expires at)
sessions: dict[bytes, list[Any]] = {}  # -> [member id, expires at, last accessed at]
codes: dict[str, tuple[bytes, bytes, float]] = {}  # member id -> (HMAC of the code, bound token's digest, expires at)
sent_by_member: dict[str, list[float]] = {}  # member id -> send times, oldest first
sent_by_phone: dict[str, list[float]] = {}  # E.164 -> send times, oldest first
outbox: list[tuple[str, str]] = []  # (E.164, code): what the member receives


def _send(member_id: str, bound_to: bytes, now: float) -> None:
    number = parse(directory[member_id], None)
    if not (is_valid_number(number) and region_code_for_number(number) in REGIONS
            and number_type(number) not in BLOCKED_TYPES):
        raise ValueError("invalid_phone_number")
    e164 = format_number(number, E164)
    by_member = sent_by_member.setdefault(member_id, [])
    by_phone = sent_by_phone.setdefault(e164, [])
    del by_member[:bisect_right(by_member, now - MEMBER_WINDOW)]
    del by_phone[:bisect_right(by_phone, now - PHONE_WINDOW)]
    if len(by_member) >= MEMBER_SENDS or len(by_phone) >= PHONE_SENDS:
        raise ValueError("too_many_requests")
    by_member.append(now)
    by_phone.append(now)
    code = f"{randbelow(1_000_000):06d}"
    codes[member_id] = (hmac_digest(KEY, code.encode(), "sha256"), bound_to, now + OTP_TTL)
    outbox.append((e164, code))


def _redeem(member_id: str, code: str, bound_to: bytes, now: float) -> None:
    kept = codes.get(member_id)
    if kept is None or now >= kept[2]:
        raise ValueError("unable_to_auth_otp_code")
    if not compare_digest(hmac_digest(KEY, code.encode(), "sha256"), kept[0]) or kept[1] != bound_to:
        raise ValueError("otp_code_not_found")
    del codes[member_id]


def _session(member_id: str, token: str, now: float) -> tuple[bytes, list[Any]]:
    digest = sha256(token.encode()).digest()
    session = sessions.get(digest)
    if session is None or session[0] != member_id or now >= session[1]:
        raise ValueError("session_not_found")
    return digest, session


def minimal_primary(member_id: str, now: float) -> str:
    ist = token_urlsafe(32)
    digest = sha256(ist.encode()).digest()
    ists[digest] = (member_id, now + IST_TTL)
    _send(member_id, digest, now)
    return ist


def minimal_authenticate(member_id: str, code: str, ist: str, now: float) -> str:
    digest = sha256(ist.encode()).digest()
    login = ists.get(digest)
    if login is None or login[0] != member_id or now >= login[1]:
        raise ValueError("intermediate_session_not_found")
    _redeem(member_id, code, digest, now)
    del ists[digest]
    session_token = token_urlsafe(32)
    sessions[sha256(session_token.encode()).digest()] = [member_id, now + SESSION_TTL, now]
    return session_token


def minimal_resend(member_id: str, session_token: str, now: float) -> None:
    digest, _ = _session(member_id, session_token, now)
    _send(member_id, digest, now)


def minimal_check(session_token: str, now: float) -> bool:
    """True when the session needs a step-up (its code then sent unless one bound to it is live)."""
    digest = sha256(session_token.encode()).digest()
    session = sessions.get(digest)
    if session is None or now >= session[1]:
        raise ValueError("session_not_found")
    if now - session[2] <= INACTIVITY:
        session[2] = now
        return False
    live = codes.get(session[0])
    if live is None or live[1] != digest or now >= live[2]:
        _send(session[0], digest, now)
    return True


def minimal_step_up(member_id: str, code: str, session_token: str, now: float) -> None:
    digest, session = _session(member_id, session_token, now)
    _redeem(member_id, code, digest, now)
    session[2] = now


def minimal_members(phone_numbers: list[str], prefix: str) -> list[str]:
    ids = [f"member-{prefix}-{i:06d}" for i in range(len(phone_numbers))]
    directory.update(zip(ids, phone_numbers, strict=True))
    return ids


def minimal_sessions(member_ids: list[str], now_of: Callable[[], float]) -> Sessions:
    """A full login for each member (set-up, untimed)."""
    out = []
    for member_id in member_ids:
        ist = minimal_primary(member_id, now_of())
        out.append((member_id, minimal_authenticate(member_id, outbox[-1][1], ist, now_of())))
    return out


def minimal_login(member_ids: list[str], timer: Timer) -> int:
    now_of, primary, authenticate = time.time, minimal_primary, minimal_authenticate
    before = len(outbox)
    started = timer()
    for member_id in member_ids:
        ist = primary(member_id, now_of())
        session_token = authenticate(member_id, outbox[-1][1], ist, now_of())
    elapsed = timer() - started
    assert session_token
    assert len(outbox) - before == len(member_ids)
    return elapsed


def minimal_resends(batch: Sessions, timer: Timer) -> int:
    now_of, resend = time.time, minimal_resend
    before = len(outbox)
    started = timer()
    for member_id, session_token in batch:
        resend(member_id, session_token, now_of())
    elapsed = timer() - started
    assert len(outbox) - before == len(batch)
    return elapsed


def minimal_checks(batch: Sessions, timer: Timer) -> int:
    now_of, check = time.time, minimal_check
    before = len(outbox)
    started = timer()
    for _, session_token in batch:
        step_up = check(session_token, now_of())
    elapsed = timer() - started
    assert not step_up
    assert len(outbox) == before
    return elapsed


def minimal_step_ups(batch: Sessions, timer: Timer) -> int:
    now_of, check, step_up = time.time, minimal_check, minimal_step_up
    before = len(outbox)
    started = timer()
    for member_id, session_token in batch:
        required = check(session_token, now_of())
        step_up(member_id, outbox[-1][1], session_token, now_of())
    elapsed = timer() - started
    assert required
    assert len(outbox) - before == len(batch)
    return elapsed


# ------------------------------------------------------------------------------------------------- memory


def _drop(message: SmsMessage) -> None:
    """A gateway that drops every message, so no list of messages is counted."""


class DropGateway:
    deliver = staticmethod(_drop)


def pending_login_bytes(pool: NumberPool, pending: int) -> float:
    flow = new_flow(DropGateway())
    member_ids = add_members(flow, pool.take(pending), "pending")
    primary = flow.authenticate_primary
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for member_id in member_ids:
        result = primary(ORG, member_id, METHOD)
    del result
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / pending


# --------------------------------------------------------------------------------------------------- main

CALLS = ("full login", "send_sms_otp (resend)", "authenticate_session (fresh)", "step-up")
TIMERS: dict[str, Timer] = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


def set_back() -> float:
    """The minimal's clock while the step-up's sessions are made."""
    return time.time() - IDLE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 rounds, 100 logins and 50 of each other call, 1000 pending")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--logins", type=int, default=None, help="full logins per round and side")
    parser.add_argument("--calls", type=int, default=None, help="each other call, per round and side")
    parser.add_argument("--pending", type=int, default=None, help="pending logins for the memory figure")
    parser.add_argument("--clock", choices=TIMERS, default="cpu",
                        help="cpu: the thread's CPU time (default; steady on a shared machine), wall: elapsed time")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    logins = args.logins or (100 if args.quick else 1000)
    calls = args.calls or (50 if args.quick else 350)
    pending = args.pending or (1000 if args.quick else 10_000)
    warmup = 20 if args.quick else 50
    timer = TIMERS[args.clock]

    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("phonenumbers", "transitions", "attrs"))
    print(f"mfa_flow benchmark — Python {platform.python_version()}, {versions}")
    pool = NumberPool()
    transport, idle_transport, clock = FakeTransport(), FakeTransport(), SetBackClock()
    flow, idle_flow = new_flow(transport), new_flow(idle_transport, clock=clock)
    ours_runs: dict[str, Callable[[Any, Timer], int]] = {
        "full login": partial(ours_login, flow, transport),
        "send_sms_otp (resend)": partial(ours_resend, flow, transport),
        "authenticate_session (fresh)": partial(ours_check, flow, transport),
        "step-up": partial(ours_step_up, idle_flow, idle_transport),
    }
    minimal_runs: dict[str, Callable[[Any, Timer], int]] = dict(
        zip(CALLS, (minimal_login, minimal_resends, minimal_checks, minimal_step_ups), strict=True))

    # Set-up, outside every timed region: per call, a warm-up batch and one batch per round, (ours, minimal).
    batches: dict[str, list[tuple[Any, Any]]] = {call: [] for call in CALLS}
    clock.back = IDLE
    for i, call in enumerate(CALLS):
        idle = call == "step-up"
        on, via = (idle_flow, idle_transport) if idle else (flow, transport)
        for r, n in enumerate([warmup] + [calls if i else logins] * rounds):
            ours_numbers, minimal_numbers = pool.take_pairs(n)
            ids = add_members(on, ours_numbers, f"{i}-{r}")
            minimal_ids = minimal_members(minimal_numbers, f"{i}-{r}")
            batches[call].append((ids, minimal_ids) if call == "full login" else (
                ours_sessions(on, via, ids), minimal_sessions(minimal_ids, set_back if idle else time.time)))
    clock.back = 0.0

    for call in CALLS:  # warm-up: imports, metadata, code paths
        ours_runs[call](batches[call][0][0], timer)
        minimal_runs[call](batches[call][0][1], timer)
    figures: dict[str, tuple[list[float], list[float]]] = {call: ([], []) for call in CALLS}
    for r in range(1, rounds + 1):
        for call in CALLS:
            sides = [(ours_runs[call], batches[call][r][0], figures[call][0]),
                     (minimal_runs[call], batches[call][r][1], figures[call][1])]
            for run, batch, out in sides if r % 2 else sides[::-1]:
                gc.collect()
                out.append(run(batch, timer) / 1000 / len(batch))

    print(f"µs per call ({args.clock} time), median of {rounds} interleaved rounds of {logins} full logins and "
          f"{calls} of each other call on each side, every call on its own member and number:")
    print(f"  {'call':<30} {'ours':>8} {'minimal':>8} {'ratio':>6}")
    ratios = {}
    for call in CALLS:
        ours_median, minimal_median = (statistics.median(side) for side in figures[call])
        ratios[call] = ours_median / minimal_median
        print(f"  {call:<30} {ours_median:8.1f} {minimal_median:8.1f} {ratios[call]:6.2f}")
    met = "met" if ratios["full login"] <= TARGET else "NOT met"
    print(f"full login ratio {ratios['full login']:.2f} (target <= {TARGET}: {met})")
    print("each round, µs per call (ours | minimal):")
    for call in CALLS:
        ours_rounds, minimal_rounds = (" ".join(f"{t:.1f}" for t in side) for side in figures[call])
        print(f"  {call:<30} {ours_rounds} | {minimal_rounds}")

    per_login = pending_login_bytes(pool, pending)
    print(f"pending login memory ({pending} pending logins, tracemalloc):")
    print(f"  {per_login:.0f} bytes per pending login   (target <= 2048: "
          f"{'met' if per_login <= 2048 else 'NOT met'})")
    print(f"  ({pool.used} distinct phone numbers used)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
