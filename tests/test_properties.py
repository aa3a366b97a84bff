"""Property-based tests: P2 phone normalisation, P3 code shape, F1 hostile phones, F2 hostile codes.

Numbers are phonenumbers' own example numbers and generated +1 NPA-555-01xx numbers (reserved for fiction);
nothing is ever delivered (FakeTransport). Settings come from the Hypothesis profile (conftest.py).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import mfa_flow.crypto
import mfa_flow.phone
from mfa_flow import Event, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.errors import InvalidPhoneNumber
from mfa_flow.phone import check_destination, parse_phone
from mfa_flow.testing import FakeClock, FakeTransport

ORG = "organization-test-1"
MEMBER = "member-test-1"
OTHER = "member-test-2"
LINKED = "+12025550177"  # OTHER's phone; outside the generated area codes
PHONE_ERRORS = {"invalid_phone_number", "invalid_phone_number_country_code"}
BLOCKED_TYPES = frozenset(
    getattr(phonenumbers.PhoneNumberType, name)
    for name in ("PREMIUM_RATE", "SHARED_COST", "TOLL_FREE", "UAN", "VOICEMAIL")
)
DEFAULT_POLICY = Policy()
TEST_NUMBER = "+10000000000"  # Stytch's sandbox number: invalid, so only ever accepted as a listed test number
TIME_LIMIT = 0.050  # seconds per hostile input (F1)

US_AREAS = ("415", "212", "646", "312", "206")
CA_AREAS = ("613", "416", "604", "514", "403")
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202a", "\u202c", "\u202e", "\u2066", "\u2069")
SPACES = (" ", "  ", "\t", "\u00a0", "\u3000", "\n")
SEPARATORS = ("", " ", "-", ".", "/", " - ")


def full_width(text: str) -> str:
    """ASCII '+' and digits to their full-width forms (U+FF0B, U+FF10..U+FF19)."""
    return "".join(chr(ord(c) + 0xFEE0) if c in "+0123456789" else c for c in text)


@functools.cache
def example_numbers() -> tuple[str, ...]:
    """phonenumbers' example numbers of every region and type, and of the non-geographic entities."""
    types = [v for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper() and isinstance(v, int)]
    found: set[str] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for number_type in types:
            number = phonenumbers.example_number_for_type(region, number_type)
            if number is not None:
                found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return tuple(sorted(found))


def fictional(areas: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.builds(lambda area, n: f"+1{area}55501{n:02d}", st.sampled_from(areas), st.integers(0, 99))


allowed_numbers = fictional(US_AREAS + CA_AREAS)
any_numbers = st.one_of(allowed_numbers, st.sampled_from(example_numbers()))


@st.composite
def renderings(draw: st.DrawFn, e164: str) -> str:
    """One rendering of ``e164``: grouping, separators, parentheses, full-width digits, zero-width and format
    characters, surrounding whitespace, ``tel:`` — everything §6.1 says normalises away."""
    number = phonenumbers.parse(e164)
    cc, national = str(number.country_code), e164[1 + len(str(number.country_code)):]
    cuts = sorted(draw(st.sets(st.integers(1, max(len(national) - 1, 1)), max_size=4)))
    groups = [national[a:b] for a, b in zip([0, *cuts], [*cuts, len(national)], strict=True) if national[a:b]]
    if len(groups) > 1 and draw(st.booleans()):
        groups[0] = f"({groups[0]})"
    body = groups[0]
    for group in groups[1:]:
        body += draw(st.sampled_from(SEPARATORS)) + group
    text = "+" + cc + draw(st.sampled_from(SEPARATORS)) + body
    if draw(st.booleans()):
        text = "".join(full_width(c) if draw(st.booleans()) else c for c in text)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(ZERO_WIDTH + SPACES[:3])) + text[at:]
    if draw(st.booleans()):
        text = "tel:" + text
    text = draw(st.sampled_from(("", *SPACES))) + text + draw(st.sampled_from(("", *SPACES)))
    assume(len(text) <= 64)
    return text


def make_flow(
    policy: Policy | None = None, *, events: list[Event] | None = None, **member_fields: Any
) -> tuple[MfaFlow, FakeTransport]:
    """A fresh flow with one organization and MEMBER (phoneless by default) and OTHER (linked to LINKED);
    ``events``, when given, receives every event the flow emits."""
    transport = FakeTransport()
    flow = MfaFlow(clock=FakeClock(), transport=transport, policy=policy or Policy(),
                   events=[] if events is None else [events.append])
    flow.directory.put_organization(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, email_address="a@example.com", **member_fields))
    flow.directory.put_member(Member(OTHER, ORG, email_address="b@example.com", mfa_phone_number=LINKED,
                                     mfa_phone_number_verified=True))
    return flow, transport


def attempt(call: Callable[[], Any]) -> tuple[Any, MfaError | None]:
    """(result, None) or (None, the MfaError raised): any other exception propagates and fails the test."""
    try:
        return call(), None
    except MfaError as exc:
        return None, exc


def independent_e164(raw: object) -> str | None:
    """The E.164 form §6.1 gives ``raw``, computed from the spec's text with phonenumbers alone (never the
    library's parse_phone): None when the argument-shape step must refuse it — not a string, over 64
    characters, no leading ``+`` once normalised, or unparseable."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")
    if text[:4].lower() == "tel:":
        text = text[4:]
    if not text.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(text)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def expected_destination_error(e164: str, raw: str | None = None) -> str | None:
    """What §5 send step 8 answers for a parsed number under the default policy (None: accepted)."""
    number = phonenumbers.parse(raw if raw is not None else e164)
    if not phonenumbers.is_valid_number(number) or number.extension:
        return "invalid_phone_number"
    if phonenumbers.number_type(number) in BLOCKED_TYPES:
        return "invalid_phone_number"
    region = phonenumbers.region_code_for_number(number)
    if region not in DEFAULT_POLICY.allowed_regions or region in DEFAULT_POLICY.unsupported_regions:
        return "invalid_phone_number_country_code"
    return None


# -- P2: phone normalisation -----------------------------------------------------------------------------


@given(raw=st.one_of(st.text(max_size=64), any_numbers.flatmap(renderings)))
def test_parse_phone_is_idempotent(raw: str) -> None:
    phone, error = attempt(lambda: parse_phone(raw, "mfa_phone_number"))
    if error is not None:
        assert isinstance(error, InvalidPhoneNumber)
        assert error.error_type == "invalid_phone_number"
        return
    again = parse_phone(phone.e164, "mfa_phone_number")
    assert again.e164 == phone.e164
    assert parse_phone(again.e164, "mfa_phone_number").e164 == phone.e164
    assert re.fullmatch(r"\+[0-9]{2,17}", phone.e164), phone.e164


@given(data=st.data(), e164=any_numbers)
def test_renderings_of_one_number_parse_to_the_same_e164(data: st.DataObject, e164: str) -> None:
    canonical = parse_phone(e164, "mfa_phone_number").e164
    assert canonical == e164
    for _ in range(3):
        raw = data.draw(renderings(e164))
        assert parse_phone(raw, "mfa_phone_number").e164 == canonical, raw


@given(data=st.data(), e164=st.one_of(allowed_numbers, st.just(TEST_NUMBER)))
def test_renderings_link_and_match_the_same_e164_through_the_flow(data: st.DataObject, e164: str) -> None:
    """A phoneless member links any rendering as canonical E.164; later renderings match it (not a mismatch).
    The sandbox number is accepted only because the policy lists it (§6.1 test_numbers), in any rendering."""
    flow, transport = make_flow(Policy(test_numbers=(TEST_NUMBER,)))
    raw = data.draw(renderings(e164))
    with recording_parse() as parse:
        flow.send_sms_otp(ORG, MEMBER, mfa_phone_number=raw)
    assert len(parse.calls) == 1, "§6.1: parse each phone once per call"
    assert flow.get_member(ORG, MEMBER).mfa_phone_number == e164
    assert transport.sent[-1].to == e164
    for _ in range(2):
        flow.send_sms_otp(ORG, MEMBER, mfa_phone_number=data.draw(renderings(e164)))
        assert transport.sent[-1].to == e164
    assert flow.get_member(ORG, MEMBER).mfa_phone_number == e164


@given(data=st.data(), pair=st.lists(allowed_numbers, min_size=2, max_size=2, unique=True))
def test_different_numbers_stay_different(data: st.DataObject, pair: list[str]) -> None:
    first, second = pair
    raw_first, raw_second = data.draw(renderings(first)), data.draw(renderings(second))
    assert parse_phone(raw_first, "f").e164 != parse_phone(raw_second, "f").e164
    flow, transport = make_flow(mfa_phone_number=first)
    with pytest.raises(MfaError) as ei:
        flow.send_sms_otp(ORG, MEMBER, mfa_phone_number=raw_second)
    assert ei.value.error_type == "duplicate_member_phone_number_for_member"
    assert flow.get_member(ORG, MEMBER).mfa_phone_number == first
    assert transport.sent == []


candidates = st.one_of(
    any_numbers,
    st.just(LINKED),
    st.builds(lambda e164, ext, sep: f"{e164}{sep}{ext}", any_numbers, st.integers(1, 99999),
              st.sampled_from([" ext. ", " x", ";ext=", " extension "])),
    st.builds(lambda d: "+" + d, st.text("0123456789", min_size=1, max_size=17)),
)
region_pool = st.frozensets(st.sampled_from(["US", "CA", "JM", "PR", "GU", "BS", "DO", "GB", "DE", "FR", "IN",
                                             "AU", "CN", "EE"]), max_size=6)


@given(raw=candidates, allowed=region_pool)
def test_check_destination_accepts_exactly_the_allowed(raw: str, allowed: frozenset[str]) -> None:
    """accepted ⇔ valid ∧ no extension ∧ allowed type ∧ allowed region ∧ not on the unsupported list."""
    phone, error = attempt(lambda: parse_phone(raw, "mfa_phone_number"))
    if error is not None:
        return
    number = phonenumbers.parse(raw)
    region = phonenumbers.region_code_for_number(number)
    should_accept = (
        phonenumbers.is_valid_number(number) and not number.extension
        and phonenumbers.number_type(number) not in BLOCKED_TYPES
        and region in allowed and region not in DEFAULT_POLICY.unsupported_regions
    )
    got, error = attempt(lambda: check_destination(
        phone, allowed_regions=allowed, unsupported_regions=DEFAULT_POLICY.unsupported_regions,
        blocked_number_types=BLOCKED_TYPES, test_numbers=frozenset()))
    if error is not None:
        assert isinstance(error, InvalidPhoneNumber)
        assert error.error_type in PHONE_ERRORS
        assert not should_accept, f"{raw} refused with {error.error_type}"
        return
    assert should_accept, f"{raw} accepted as {got}"
    assert got == region


@given(raw=candidates)
def test_check_destination_test_numbers_skip_only_validity_type_and_region(raw: str) -> None:
    phone, error = attempt(lambda: parse_phone(raw, "mfa_phone_number"))
    if error is not None:
        return
    _, error = attempt(lambda: check_destination(
        phone, allowed_regions=frozenset(), unsupported_regions=frozenset(),
        blocked_number_types=BLOCKED_TYPES, test_numbers=frozenset({phone.e164})))
    has_extension = bool(phonenumbers.parse(raw).extension)
    assert (error is not None) == has_extension, f"{raw}: {error!r}"
    if error is not None:
        assert error.error_type == "invalid_phone_number"


@given(raw=candidates)
def test_send_accepts_only_allowed_destinations(raw: str) -> None:
    """Through the flow (default policy, phoneless member, no token needed): the §5 step 8 answer, and an
    accepted number is linked and sent to as its E.164."""
    flow, transport = make_flow()
    expected_e164 = independent_e164(raw)
    _, error = attempt(lambda: flow.send_sms_otp(ORG, MEMBER, mfa_phone_number=raw))
    if error is not None:
        if expected_e164 == LINKED:  # §5: the duplicate check (step 6) comes before the destination (step 8)
            assert error.error_type == "duplicate_member_phone_number"
        elif expected_e164 is None:
            assert isinstance(error, InvalidPhoneNumber)
            assert error.error_type == "invalid_phone_number"
        else:
            assert isinstance(error, InvalidPhoneNumber), error.error_type
            assert error.error_type == expected_destination_error(expected_e164, raw)
        assert flow.get_member(ORG, MEMBER).mfa_phone_number == ""
        assert transport.sent == []
        return
    assert expected_e164 is not None
    assert expected_destination_error(expected_e164, raw) is None
    assert flow.get_member(ORG, MEMBER).mfa_phone_number == expected_e164
    assert [m.to for m in transport.sent] == [expected_e164]


# -- P3: the code generator ------------------------------------------------------------------------------


def test_generate_code_is_six_ascii_digits_with_leading_zeros() -> None:
    codes = [mfa_flow.crypto.generate_code() for _ in range(2000)]
    for code in codes:
        assert isinstance(code, str)
        assert re.fullmatch(r"[0-9]{6}", code, flags=re.ASCII), code
    assert any(code.startswith("0") for code in codes), "leading zeros must occur (p of none ≈ 1e-92)"
    for position in range(6):
        assert {code[position] for code in codes} == set("0123456789")
    assert len(set(codes)) > 1900


@pytest.mark.parametrize(("answer", "expected"), [(lambda n: 0, "000000"), (lambda n: n - 1, "999999")])
def test_generate_code_draws_from_secrets(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[int], int], expected: str
) -> None:
    calls: list[int] = []

    def randbelow(n: int) -> int:
        calls.append(n)
        return answer(n)

    monkeypatch.setattr(mfa_flow.crypto.secrets, "randbelow", randbelow)
    assert mfa_flow.crypto.generate_code() == expected
    assert calls, "secrets.randbelow was never called"
    # The flow's codes come from the same generator.
    calls.clear()
    flow, transport = make_flow(mfa_phone_number="+14155550150", mfa_phone_number_verified=True)
    flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert calls
    assert transport.sent[-1].code == expected


def test_no_module_of_the_package_imports_random() -> None:
    package = Path(mfa_flow.crypto.__file__).parent
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] != "random" for alias in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "random", path


# -- F1: hostile phone input -----------------------------------------------------------------------------

HOSTILE_CHARS = st.characters(codec=None, categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Nd", "No", "Sm", "Po"])
NON_STRINGS: tuple[object, ...] = (
    None, 14155550123, 1.5, True, b"+14155550123", bytearray(b"+1"), ["+14155550123"], ("+1",),
    {"phone": "+14155550123"}, {"+14155550123"}, object(), Ellipsis,
)

hostile_phones = st.one_of(
    st.text(max_size=80),
    st.text(HOSTILE_CHARS, max_size=80),
    st.builds(lambda d: "+" + d, st.text("0123456789", min_size=15, max_size=20)),
    st.builds(lambda d, z: "+" + z.join(d), st.text("0123456789", min_size=15, max_size=20),
              st.sampled_from(ZERO_WIDTH)),
    st.builds(lambda p, n: (p * (10_240 // max(len(p), 1) + 1))[:n], st.text(min_size=1, max_size=8),
              st.integers(10_000, 10_240)),
    st.sampled_from([
        "+" + "1" * 10_239, "\u202e+14155550123", "+1415\u202e5550123", "+1\x00415\x005550123",
        "tel:" * 20, "+" * 64, "\u0661\u0664\u0661\u0665", "+1 415 555 0123" + "\u200b" * 60,
        " " * 65 + "+14155550123", "+14155550123;ext=" + "9" * 50, "+1" + "\u0665" * 10,
        "+८८८८८८८८८८", "🙂+14155550123", "\ud800", "+1\r\n415\r\n5550123",
    ]),
    st.sampled_from(NON_STRINGS),
)


@pytest.fixture(scope="module", autouse=True)
def _warm_phonenumbers() -> None:
    """Load every region's metadata once, so the 50 ms budget measures the work, not lazy imports."""
    example_numbers()
    for region in phonenumbers.SUPPORTED_REGIONS:
        phonenumbers.PhoneMetadata.metadata_for_region(region)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)


class ParseRecorder:
    """Wraps the package's one parse step (phonenumbers.parse, or its E.164 fast path) and remembers every
    text it was given."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls: list[object] = []

    def __call__(self, number: object, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(number)
        return self.real(number, *args, **kwargs)


@contextlib.contextmanager
def recording_parse() -> Iterator[ParseRecorder]:
    recorder = ParseRecorder(mfa_flow.phone.parse_number)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mfa_flow.phone, "parse_number", recorder)
        yield recorder


def timed(call: Callable[[], Any]) -> tuple[Any, MfaError | None, float]:
    start = time.perf_counter()
    try:
        result, error = call(), None
    except MfaError as exc:
        result, error = None, exc
    return result, error, time.perf_counter() - start


@given(raw=hostile_phones)
def test_parse_phone_hostile_input(raw: object) -> None:
    with recording_parse() as parse:
        result, error, elapsed = timed(lambda: parse_phone(raw, "mfa_phone_number"))
    assert elapsed < TIME_LIMIT, f"{elapsed * 1000:.1f} ms"
    if error is not None:
        assert isinstance(error, InvalidPhoneNumber)
        assert error.error_type == "invalid_phone_number"
        assert "mfa_phone_number" in error.error_message
    else:
        assert isinstance(raw, str)
        assert re.fullmatch(r"\+[0-9]+", result.e164)
    if not isinstance(raw, str) or len(raw) > 64:
        assert error is not None
        assert parse.calls == [], "over 64 characters (or not a string): refused before parsing"


@given(raw=hostile_phones)
def test_send_hostile_phone_input(raw: object) -> None:
    flow, transport = make_flow()
    with recording_parse() as parse:
        _, error, elapsed = timed(lambda: flow.send_sms_otp(ORG, MEMBER, mfa_phone_number=raw))  # type: ignore[arg-type]
    assert elapsed < TIME_LIMIT, f"{elapsed * 1000:.1f} ms"
    if raw is None:  # None means "no number given": this phoneless member has nothing to send to
        assert error is not None
        assert error.error_type == "member_phone_number_not_found"
        return
    if error is None:  # a hostile string may still be a fine number once normalised
        assert isinstance(raw, str)
        assert [m.to for m in transport.sent] == [flow.get_member(ORG, MEMBER).mfa_phone_number]
        return
    assert isinstance(error, InvalidPhoneNumber), error.error_type
    assert error.error_type in PHONE_ERRORS
    assert transport.sent == []
    if not isinstance(raw, str) or len(raw) > 64:
        assert error.error_type == "invalid_phone_number"
        assert parse.calls == [], "over 64 characters (or not a string): refused before parsing"


# -- F2: hostile code input ------------------------------------------------------------------------------

CODE_VARIANTS: dict[str, Callable[[str], object]] = {
    "empty": lambda c: "",
    "none": lambda c: None,
    "int": int,
    "float": float,
    "leading space": lambda c: " " + c,
    "trailing space": lambda c: c + " ",
    "trailing newline": lambda c: c + "\n",
    "full width": full_width,
    "arabic-indic": lambda c: "".join(chr(0x0660 + int(d)) for d in c),
    "zero width": lambda c: c[:3] + "\u200b" + c[3:],
    "mathematical bold": lambda c: "".join(chr(0x1D7CE + int(d)) for d in c),  # NFKC makes them ASCII
    "10 kB": lambda c: c * 1707,
    "prefix": lambda c: c[:5],
    "longer": lambda c: c + "0",
    "plus": lambda c: "+" + c,
    "minus": lambda c: "-" + c[1:],
    "bytes": lambda c: c.encode(),
    "list": lambda c: [c],
    "tuple": lambda c: (c,),
    "dict": lambda c: {"code": c},
    "set": lambda c: {c},
    "object": lambda c: object(),
}

other_codes = st.one_of(
    st.text(max_size=20),
    st.text("0123456789", min_size=6, max_size=6),
    st.integers(),
    st.binary(max_size=12),
    st.lists(st.text("0123456789", max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=6), st.text("0123456789", max_size=6), max_size=2),
    st.builds(lambda n: "7" * n, st.integers(10_000, 10_240)),
)


@given(variant=st.sampled_from(sorted(CODE_VARIANTS)) | other_codes)
def test_hostile_code_never_succeeds(variant: object) -> None:
    """Only the exact current code succeeds; anything else is a wrong code (§6.5), and only MfaError."""
    events: list[Event] = []
    flow, transport = make_flow(events=events, mfa_phone_number="+14155550150", mfa_phone_number_verified=True)
    ist = flow.authenticate_primary(ORG, MEMBER, "email_magic_link").intermediate_session_token
    code = transport.sent[-1].code
    submitted = CODE_VARIANTS[variant](code) if isinstance(variant, str) and variant in CODE_VARIANTS else variant
    assume(not (isinstance(submitted, str) and submitted == code))
    with pytest.raises(MfaError) as ei:
        flow.authenticate_sms_otp(ORG, MEMBER, submitted, intermediate_session_token=ist)  # type: ignore[arg-type]
    assert ei.value.error_type == "otp_code_not_found"
    assert code not in str(ei.value)
    # Exactly one failure was counted, on the code and on the member ...
    failed = [e for e in events if e.name == "otp.failed"]
    assert len(failed) == 1, failed
    assert failed[0].member_id == MEMBER
    assert failed[0].reason == "otp_code_not_found"
    assert failed[0].data["attempts"] == 1
    assert failed[0].data["failures"] == 1
    assert "member.locked" not in [e.name for e in events]
    assert not flow.get_member(ORG, MEMBER).is_locked
    # ... and the code is still live: the right code now succeeds.
    result = flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    assert result.member_id == MEMBER
    assert result.session_token
    assert [e.name for e in events].count("otp.failed") == 1
    assert [e.name for e in events].count("otp.verified") == 1
