"""How much a login costs through MfaFlow, against a hand-written minimum doing the same work.

    python3 benchmarks/bench_flow.py            # 7 rounds x 2000 logins each side, 10,000 pending logins
    python3 benchmarks/bench_flow.py --quick    # a smoke run of a few seconds

Time: the full login — primary authentication with the automatic code, then authenticate with that code, which
issues the session — through ``MfaFlow`` on its defaults (memory store, system clock, default policy) with
``FakeTransport``, for a member with ``mfa_enrolled`` and a verified phone. The baseline does the same work with
no classes and no padding: per login one phonenumbers parse + ``is_valid_number`` + ``region_code_for_number``
+ ``number_type`` + E.164 format, one 6-digit code from ``secrets`` kept as one HMAC-SHA256 (and checked with
``hmac.compare_digest`` against the HMAC of the submitted code), two ``secrets.token_urlsafe(32)`` (IST and
session) each stored under its SHA-256 in a dict, sliding-window send counting per member and per phone in dicts,
and plain dict writes. Both sides run in the same process, rounds interleaved; each figure is the median over
the rounds of (round time / logins). Target: ours / baseline <= 2.0.

Every login uses a member and a phone number that no other login of the process uses, so no cache anywhere can
help: numbers are +1 NPA 555-01XX (the range reserved for fiction) across every US and Canadian area code that
phonenumbers accepts as a valid fixed-line-or-mobile number; the directory is filled outside the timed region.

Memory: bytes per pending login = the tracemalloc delta over 10,000 pending logins (primary authentication with
the automatic send, not yet authenticated) / 10,000, with a gateway that drops messages (so no list of messages
is counted) and the directory filled before tracemalloc starts. Target: <= 2 KB.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import platform
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import phonenumbers

from mfa_flow import Member, MfaFlow, Organization
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
            raise SystemExit(f"bench_flow: ran out of fictional numbers after {self.used} (ask for fewer logins)")
        self.used += n
        return out


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


def ours(flow: MfaFlow, transport: FakeTransport, member_ids: list[str]) -> int:
    """Full logins through MfaFlow; returns the elapsed nanoseconds."""
    sent = transport.sent
    primary = flow.authenticate_primary
    authenticate = flow.authenticate_sms_otp
    before = len(sent)
    started = time.perf_counter_ns()
    for member_id in member_ids:
        ist = primary(ORG, member_id, METHOD).intermediate_session_token
        session_token = authenticate(ORG, member_id, sent[-1].code, intermediate_session_token=ist).session_token
    elapsed = time.perf_counter_ns() - started
    assert session_token
    assert len(sent) - before == len(member_ids), "every login must have sent exactly one code"
    return elapsed


# ----------------------------------------------------------------------------------------------- baseline


State = dict[str, dict[Any, Any]]


def new_baseline_state() -> State:
    return {"directory": {}, "ists": {}, "sessions": {}, "codes": {}, "win_member": {}, "win_phone": {}}


def baseline(state: State, key: bytes, member_ids: list[str], outbox: list[tuple[str, str, str]]) -> int:
    """The same logins, hand-written: no classes, no events, no store abstraction; returns nanoseconds."""
    directory, ists, sessions, codes = state["directory"], state["ists"], state["sessions"], state["codes"]
    win_member, win_phone = state["win_member"], state["win_phone"]
    sha256, hmac_new, compare, token, randbelow = (hashlib.sha256, hmac.new, hmac.compare_digest,
                                                   secrets.token_urlsafe, secrets.randbelow)
    parse, valid, region_of, type_of, fmt = (phonenumbers.parse, phonenumbers.is_valid_number,
                                             phonenumbers.region_code_for_number, phonenumbers.number_type,
                                             phonenumbers.format_number)
    now_of = time.time
    started = time.perf_counter_ns()
    for member_id in member_ids:
        # primary authentication: the member, its phone, the limits, the IST, the code, the delivery
        now = now_of()
        member_key = (ORG, member_id)
        raw_phone = directory[member_key]
        number = parse(raw_phone, None)
        if not valid(number) or region_of(number) not in REGIONS or type_of(number) in BLOCKED_TYPES:
            raise ValueError("refused destination")
        e164 = fmt(number, E164)
        recent_member = [t for t in win_member.get(member_key, ()) if now - t < 600.0]
        recent_phone = [t for t in win_phone.get(e164, ()) if now - t < 600.0]
        if len(recent_member) >= 5 or len(recent_phone) >= 5:
            raise ValueError("too many sends")
        recent_member.append(now)
        recent_phone.append(now)
        win_member[member_key] = recent_member
        win_phone[e164] = recent_phone
        ist = token(32)
        ist_digest = sha256(ist.encode()).hexdigest()
        ists[ist_digest] = (ORG, member_id, now + 600.0)
        code = f"{randbelow(1_000_000):06d}"
        codes[member_key] = (hmac_new(key, code.encode(), "sha256").digest(), ist_digest, now + 120.0)
        outbox.append((e164, code, member_id))
        # authenticate with the code the member received
        submitted = outbox[-1][1]
        now = now_of()
        digest = sha256(ist.encode()).hexdigest()
        login = ists.get(digest)
        if login is None or login[1] != member_id or now >= login[2]:
            raise ValueError("intermediate_session_not_found")
        code_digest, bound_to, expires_at = codes[member_key]
        if bound_to != digest or now >= expires_at or not compare(
                hmac_new(key, submitted.encode(), "sha256").digest(), code_digest):
            raise ValueError("otp_code_not_found")
        del codes[member_key]
        del ists[digest]
        session_token = token(32)
        sessions[sha256(session_token.encode()).hexdigest()] = (ORG, member_id, now, now + 3600.0, login[:2])
    elapsed = time.perf_counter_ns() - started
    assert session_token
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds x 200 logins, 1000 pending")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--logins", type=int, default=None, help="logins per round")
    parser.add_argument("--pending", type=int, default=None, help="pending logins for the memory figure")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    logins = args.logins or (200 if args.quick else 2000)
    pending = args.pending or (1000 if args.quick else 10_000)
    warmup = 50 if args.quick else 200

    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("phonenumbers", "transitions", "attrs"))
    print(f"mfa_flow benchmark — Python {platform.python_version()}, {versions}")
    pool = NumberPool()

    # Set-up outside every timed region: directories for every login of every round, on both sides.
    transport = FakeTransport()
    flow = new_flow(transport)
    ours_batches = [add_members(flow, pool.take(n), f"ours{r}") for r, n in
                    enumerate([warmup] + [logins] * rounds)]
    key = secrets.token_bytes(32)
    state = new_baseline_state()
    outbox: list[tuple[str, str, str]] = []
    baseline_batches: list[list[str]] = []
    for r, n in enumerate([warmup] + [logins] * rounds):
        ids = [f"member-base{r}-{i:06d}" for i in range(n)]
        state["directory"].update(zip([(ORG, m) for m in ids], pool.take(n), strict=True))
        baseline_batches.append(ids)

    ours(flow, transport, ours_batches[0])  # warm-up: imports, metadata, code paths
    baseline(state, key, baseline_batches[0], outbox)
    ours_us: list[float] = []
    base_us: list[float] = []
    for r in range(1, rounds + 1):
        order = [("ours", ours_batches[r]), ("base", baseline_batches[r])]
        for side, batch in order if r % 2 else order[::-1]:
            gc.collect()
            if side == "ours":
                ours_us.append(ours(flow, transport, batch) / 1000 / len(batch))
            else:
                base_us.append(baseline(state, key, batch, outbox) / 1000 / len(batch))
    ours_median = statistics.median(ours_us)
    base_median = statistics.median(base_us)
    ratio = ours_median / base_median

    print(f"full login (primary auth + automatic code + authenticate + session), "
          f"median of {rounds} rounds x {logins} logins:")
    print(f"  ours (MfaFlow):           {ours_median:8.1f} µs/login   rounds: "
          + " ".join(f"{t:.0f}" for t in ours_us))
    print(f"  baseline (hand-written):  {base_median:8.1f} µs/login   rounds: "
          + " ".join(f"{t:.0f}" for t in base_us))
    print(f"  ratio ours/baseline:      {ratio:8.2f}   (target <= 2.0: {'met' if ratio <= 2.0 else 'NOT met'})")

    per_login = pending_login_bytes(pool, pending)
    print(f"pending login memory ({pending} pending logins, tracemalloc):")
    print(f"  {per_login:.0f} bytes per pending login   (target <= 2048: "
          f"{'met' if per_login <= 2048 else 'NOT met'})")
    print(f"  ({pool.used} distinct phone numbers used)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
