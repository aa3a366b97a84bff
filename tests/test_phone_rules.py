"""Rule tests for phones on the send side: normalisation, shape, region and number type (spec §6.1, U10,
U12) and the resolution of the destination (spec §6.2, U9, U11)."""

from __future__ import annotations

import time
from collections.abc import Callable

import phonenumbers
import pytest

from mfa_flow import Member, MfaError, Policy
from mfa_flow.phone import mask_phone
from tests.helpers_send import (
    M2_FRESH,
    M_FRESH,
    M_FRESH2,
    M_OTHER,
    M_UNVERIFIED,
    M_VERIFIED,
    ORG,
    ORG2,
    P_BS,
    P_CA,
    P_DO,
    P_GU,
    P_INVALID,
    P_JM,
    P_NEW,
    P_NEW2,
    P_OTHER,
    P_PR,
    P_PREMIUM,
    P_TOLL_FREE,
    P_UNVERIFIED,
    P_VERIFIED,
    Env,
    event_names,
    expect_error,
    expect_send_refused,
    make_env,
    primary_ist,
)

DEFAULT_BLOCKED = {"PREMIUM_RATE", "SHARED_COST", "TOLL_FREE", "UAN", "VOICEMAIL"}

# reference stytch-b2b-sms-otp.md §5, every entry mapped to its ISO 3166-1 alpha-2 code (§6.1: exactly these).
_REFERENCE_UNSUPPORTED_TEXT = (
    "DZ AF AL AD AO AQ AM AW AZ BS BH BD BB BY BZ BM BT BA BW BV VG MM BI KH CV KY TD CN HK KM CD "
    "CI CU CW BQ CY DK DJ DM TL EG GQ ET ER EE FO FJ PF GA GM GE GI GL GP GU GN HT HN ID IL IR IQ JE JO KZ KP "
    "XK KW KG LA LB LS LR LY MO MK"
)
REFERENCE_UNSUPPORTED = frozenset(_REFERENCE_UNSUPPORTED_TEXT.split())


def link(env: Env, member_id: str, phone: str, organization_id: str = ORG) -> str:
    """Send to ``phone`` for a member without an active factor; return where the transport delivered."""
    before = len(env.transport.sent)
    res = env.flow.send_sms_otp(organization_id, member_id, mfa_phone_number=phone)
    assert res.status_code == 200
    sent = env.transport.sent[before:]
    assert len(sent) == 1
    return str(sent[0].to)


# --------------------------------------------------------------------------------------------------
# §6.1 normalisation (U10)
# --------------------------------------------------------------------------------------------------

OWN_NUMBER_VARIANTS = [
    "+1 415 555 0123",
    "+1-415-555-0123",
    "+1 (415) 555-0123",
    "+1.415.555.0123",
    "+1\t415\n555 0123",
    "\u00a0+1\u00a0415\u00a0555\u00a00123\u00a0",  # no-break spaces
    "\u3000+1\u3000415\u3000555\u30000123",  # ideographic spaces
    "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",  # full-width ＋ and digits
    "\uff0b1 (415) \uff15\uff15\uff15\uff0d0123",  # mixed full-width, full-width hyphen
    "+1\u200b415\u200b555\u200b0123",  # zero-width spaces (Cf)
    "\u202e+14155550123",  # right-to-left override (Cf)
    "+1415555\u202c0123",  # pop directional formatting (Cf)
    "\ufeff+14155550123\u2060",  # BOM and word joiner (Cf)
    "tel:+14155550123",
    "tel:+1-415-555-0123",
    "tel:\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
]


@pytest.mark.parametrize("variant", OWN_NUMBER_VARIANTS)
def test_phone_normalisation_variants_of_own_number_accepted(variant: str) -> None:
    env = make_env()
    ist = primary_ist(env, ORG, M_VERIFIED)
    before_member = env.flow.get_member(ORG, M_VERIFIED)
    mark = env.mark()
    res = env.flow.send_sms_otp(ORG, M_VERIFIED, mfa_phone_number=variant, intermediate_session_token=ist)
    assert res.status_code == 200
    assert [(s.to, s.member_id) for s in env.sent_since(mark)] == [(P_VERIFIED, M_VERIFIED)]
    assert env.flow.get_member(ORG, M_VERIFIED) == before_member
    names = event_names(env.events_since(mark))
    assert "otp.sent" in names
    assert "phone.linked" not in names
    # The code sent to the variant is the member's live code.
    code = env.transport.sent[-1].code
    assert env.flow.authenticate_sms_otp(ORG, M_VERIFIED, code, intermediate_session_token=ist).session_token


@pytest.mark.parametrize("variant", ["+1 415 555 0124", "\uff0b1 415 555 0124", "tel:+1-415-555-0124\u200b"])
def test_phone_normalisation_variants_of_unverified_own_number_accepted(variant: str) -> None:
    env = make_env()
    assert link(env, M_UNVERIFIED, variant) == P_UNVERIFIED
    m = env.flow.get_member(ORG, M_UNVERIFIED)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_UNVERIFIED, False)


def test_phone_normalisation_links_canonical_e164() -> None:
    env = make_env()
    assert link(env, M_FRESH, "\uff0b\uff11 (\uff14\uff11\uff15) \uff15\uff15\uff15-\uff10\uff11\uff13\uff10") == P_NEW
    m = env.flow.get_member(ORG, M_FRESH)
    assert m.mfa_phone_number == P_NEW
    linked = [e for e in env.events if e.name == "phone.linked"]
    assert len(linked) == 1
    assert linked[0].phone == "XXXXXXX0130"
    # Another rendering of the same number is the linked phone, not a mismatch.
    assert link(env, M_FRESH, "tel:+1-415-555-0130") == P_NEW
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == P_NEW


# --------------------------------------------------------------------------------------------------
# §6.1 shape: no leading +, length, extension, type, unparseable
# --------------------------------------------------------------------------------------------------


TRUNK_OWNER = "member-test-trunk"
TRUNK_STORED = "+4402079460123"  # "+44 (0)20 7946 0123" without its spaces: Ofcom's drama range (fiction)
TRUNK_E164 = "+442079460123"


def test_phone_trunk_prefix_after_the_calling_code_is_the_same_number() -> None:
    """A directory number kept as "+44 (0)20…" without its spaces is +4420…: another member cannot link it
    in the proper form (the duplicate check sees the same number), and its owner's own number in the proper
    form is no mismatch, delivered to and shown as the one E.164."""
    env = make_env(Policy(allowed_regions={"US", "CA", "GB"}))
    env.flow.directory.put_member(Member(TRUNK_OWNER, ORG, mfa_phone_number=TRUNK_STORED))
    mark = env.mark()
    expect_send_refused(env, M_FRESH, "duplicate_member_phone_number", mfa_phone_number="+44 20 7946 0123")
    assert env.sent_since(mark) == []
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == ""
    assert env.flow.get_member(ORG, TRUNK_OWNER).mfa_phone_number == TRUNK_E164
    assert link(env, TRUNK_OWNER, TRUNK_E164) == TRUNK_E164


@pytest.mark.parametrize(
    "phone", ["14155550130", "4155550130", "001 415 555 0130", "tel:14155550130", "1-415-555-0130",
              "(415) 555-0130", "\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff13\uff10"]
)
def test_phone_without_leading_plus_refused(phone: str) -> None:
    env = make_env()
    err = expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)
    assert err.status_code == 400


def test_phone_without_leading_plus_refused_even_for_own_number() -> None:
    env = make_env()
    expect_send_refused(env, M_UNVERIFIED, "invalid_phone_number", mfa_phone_number="14155550124")


def test_phone_over_64_characters_refused() -> None:
    env = make_env()
    # Each normalises to a valid US number; only the raw length decides.
    for padding in (" ", "\u200b", "-"):
        too_long = "+14155550130" + padding * 53
        assert len(too_long) == 65
        expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=too_long)
    huge = "+1" + "4" * 10_000
    started = time.perf_counter()
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=huge)
    assert time.perf_counter() - started < 1.0
    # Exactly 64 characters is allowed.
    exactly = "+14155550130" + " " * 52
    assert len(exactly) == 64
    assert link(env, M_FRESH, exactly) == P_NEW


@pytest.mark.parametrize(
    "phone",
    ["+14155550130 ext. 12", "+14155550130;ext=12", "+1 415 555 0130 x12", "tel:+14155550130;ext=12",
     "+1 415 555 0130 extension 12"],
)
def test_phone_extension_refused(phone: str) -> None:
    env = make_env()
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == ""
    # The same number without the extension is fine.
    assert link(env, M_FRESH, P_NEW) == P_NEW


@pytest.mark.parametrize("phone", ["", "+", "+1", "++", "hello", "+1abc", "+999123456", "\u200b", "tel:"])
def test_phone_unparseable_refused(phone: str) -> None:
    env = make_env()
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)


@pytest.mark.parametrize("phone", [14155550130, 1.4155550130e10, b"+14155550130", ["+14155550130"],
                                   {"number": "+14155550130"}, True])
def test_phone_not_a_string_refused(phone: object) -> None:
    env = make_env()
    err = expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------------------------------
# §6.1 regions and number types (U12)
# --------------------------------------------------------------------------------------------------

DEFAULT_POLICY_TABLE = [
    ("US", P_NEW, None),
    ("CA", P_CA, None),
    ("JM +1 876", P_JM, "invalid_phone_number_country_code"),
    ("DO +1 809", P_DO, "invalid_phone_number_country_code"),
    ("BS +1 242", P_BS, "invalid_phone_number_country_code"),
    ("PR +1 787", P_PR, "invalid_phone_number_country_code"),
    ("GU +1 671", P_GU, "invalid_phone_number_country_code"),
    ("GB", "+447400123456", "invalid_phone_number_country_code"),
    ("FR", "+33612345678", "invalid_phone_number_country_code"),
    ("US premium +1 900", P_PREMIUM, "invalid_phone_number"),
    ("US toll-free +1 800", P_TOLL_FREE, "invalid_phone_number"),
    ("US toll-free +1 888", "+18885550123", "invalid_phone_number"),
    ("invalid +1 000", P_INVALID, "invalid_phone_number"),
    ("invalid BS +1 242 555", "+12425550123", "invalid_phone_number"),
    ("+882 international network", "+8821234567", "invalid_phone_number"),
]


@pytest.mark.parametrize(("phone", "error_type"), [c[1:] for c in DEFAULT_POLICY_TABLE],
                         ids=[c[0] for c in DEFAULT_POLICY_TABLE])
def test_phone_region_is_the_parsed_region_under_default_policy(phone: str, error_type: str | None) -> None:
    env = make_env()
    if error_type is None:
        assert link(env, M_FRESH, phone) == phone
        assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == phone
        return
    err = expect_send_refused(env, M_FRESH, error_type, mfa_phone_number=phone)
    assert err.status_code == 400
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == ""


def test_phone_allowlist_admits_parsed_regions() -> None:
    env = make_env(Policy(allowed_regions={"US", "CA", "JM", "PR", "DO"}))
    assert link(env, M_FRESH, "+1 (876) 555-0123") == P_JM
    assert link(env, M_FRESH2, P_PR) == P_PR
    assert link(env, M2_FRESH, P_DO, organization_id=ORG2) == P_DO
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == P_JM
    # Regions outside the allowlist are still refused (GU is also on the unsupported list; GB is not).
    env.flow.directory.put_member(Member("member-gb", ORG, email_address="gb@example.com"))
    expect_send_refused(env, "member-gb", "invalid_phone_number_country_code", mfa_phone_number="+447400123456")
    # A narrower allowlist refuses CA.
    env = make_env(Policy(allowed_regions={"US"}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=P_CA)
    assert link(env, M_FRESH, P_NEW) == P_NEW


@pytest.mark.parametrize(("region", "phone"), [("GU", P_GU), ("BS", P_BS)])
def test_phone_unsupported_list_beats_allowlist(region: str, phone: str) -> None:
    env = make_env(Policy(allowed_regions={"US", "CA", region}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=phone)
    # Users may replace the shipped list: without it the allowlisted region is accepted.
    env = make_env(Policy(allowed_regions={"US", "CA", region}, unsupported_regions=frozenset()))
    assert link(env, M_FRESH, phone) == phone
    # A replaced list is honoured too: here it refuses an allowlisted CA.
    env = make_env(Policy(unsupported_regions={"CA"}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=P_CA)


def test_phone_shipped_unsupported_list_is_the_reference_list() -> None:
    assert Policy().unsupported_regions == REFERENCE_UNSUPPORTED


def _example_number(region: str) -> str | None:
    t = phonenumbers.PhoneNumberType
    number = phonenumbers.example_number_for_type(region, t.MOBILE) or phonenumbers.example_number_for_type(
        region, t.FIXED_LINE
    )
    if number is None:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


UNSUPPORTED_WITH_NUMBERS = sorted(r for r in REFERENCE_UNSUPPORTED if _example_number(r) is not None)


@pytest.mark.parametrize("region", UNSUPPORTED_WITH_NUMBERS)
def test_phone_each_unsupported_region_refused_even_when_allowlisted(region: str) -> None:
    phone = _example_number(region)
    assert phone is not None
    parsed = phonenumbers.parse(phone, None)
    assert phonenumbers.is_valid_number(parsed)
    assert phonenumbers.region_code_for_number(parsed) == region
    env = make_env(Policy(allowed_regions={"US", "CA", region}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=phone)


BLOCKED_TYPE_TABLE = [
    ("GB premium rate", "+449012345678"),
    ("GB UAN", "+445512345678"),
    ("GB toll free", "+448001234567"),
    ("DE shared cost", "+4918012345"),
    ("DE voicemail", "+49177991234567"),
    ("US premium rate", P_PREMIUM),
    ("US toll free", P_TOLL_FREE),
]


@pytest.mark.parametrize("phone", [c[1] for c in BLOCKED_TYPE_TABLE], ids=[c[0] for c in BLOCKED_TYPE_TABLE])
def test_phone_refused_number_types_even_in_allowed_regions(phone: str) -> None:
    env = make_env(Policy(allowed_regions={"US", "CA", "GB", "DE"}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)


def test_phone_allowed_number_types_and_voip_as_policy_choice() -> None:
    env = make_env(Policy(allowed_regions={"US", "CA", "GB", "DE"}))
    assert link(env, M_FRESH, "+447400123456") == "+447400123456"  # GB mobile
    assert link(env, M_FRESH2, "+445612345678") == "+445612345678"  # GB VOIP: not refused by default
    env = make_env(Policy(allowed_regions={"US", "CA", "GB"}, blocked_number_types=DEFAULT_BLOCKED | {"VOIP"}))
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number="+445612345678")


def test_phone_test_numbers_skip_validity_region_and_type() -> None:
    # Not listed: refused.
    env = make_env()
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=P_INVALID)
    env = make_env(Policy(test_numbers=(P_INVALID, P_JM, P_PREMIUM, "+10000000009")))
    f = env.flow
    assert link(env, M_FRESH, "+1 000 000 0000") == P_INVALID  # invalid, but a listed test number
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == P_INVALID
    assert link(env, M_FRESH2, P_JM) == P_JM  # region JM not allowed, but listed
    assert link(env, M2_FRESH, P_PREMIUM, organization_id=ORG2) == P_PREMIUM  # premium, but listed
    # Only exactly those numbers: neighbours and other numbers are still checked.
    f.directory.put_member(Member("member-x", ORG, email_address="x@example.com"))
    for phone, error_type in [("+10000000001", "invalid_phone_number"), ("+18765550124",
                                                                       "invalid_phone_number_country_code"),
                              (P_GU, "invalid_phone_number_country_code"), (P_TOLL_FREE, "invalid_phone_number")]:
        expect_send_refused(env, "member-x", error_type, mfa_phone_number=phone)
    # An extension is refused even on a test number.
    expect_send_refused(env, "member-x", "invalid_phone_number", mfa_phone_number="+10000000009 ext. 1")


# --------------------------------------------------------------------------------------------------
# §6.2 resolving the destination
# --------------------------------------------------------------------------------------------------


def test_destination_linked_phone_when_none_given() -> None:
    env = make_env()
    ist = primary_ist(env, ORG, M_VERIFIED)
    mark = env.mark()
    env.flow.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist)
    assert [s.to for s in env.sent_since(mark)] == [P_VERIFIED]
    sent_events = [e for e in env.events_since(mark) if e.name == "otp.sent"]
    assert [e.phone for e in sent_events] == ["XXXXXXX0123"]
    assert link(env, M_UNVERIFIED, "+14155550124") == P_UNVERIFIED
    env.flow.send_sms_otp(ORG, M_UNVERIFIED)
    assert env.transport.sent[-1].to == P_UNVERIFIED


def test_destination_same_number_formatted_differently_is_the_linked_phone() -> None:
    env = make_env()
    before = env.flow.get_member(ORG, M_UNVERIFIED)
    mark = env.mark()
    assert link(env, M_UNVERIFIED, "+1 (415) 555-0124") == P_UNVERIFIED
    assert env.flow.get_member(ORG, M_UNVERIFIED) == before
    assert "phone.linked" not in event_names(env.events_since(mark))


ATTACKER_NUMBERS = [
    P_NEW,
    "+1 415 555 0130",
    "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff13\uff10",
    P_CA,
    P_JM,
    P_PREMIUM,
    P_INVALID,
    P_OTHER,
]


@pytest.mark.parametrize("attacker_number", ATTACKER_NUMBERS)
def test_destination_different_number_refused_and_phone_unchanged(attacker_number: str) -> None:
    # U9 from the attacker's side: primary authentication done (IST in hand), tries their own number.
    env = make_env()
    f = env.flow
    ist = primary_ist(env, ORG, M_VERIFIED)
    expect_send_refused(env, M_VERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=attacker_number,
                        intermediate_session_token=ist)
    # Also with no token, and for a member whose phone is linked but unverified.
    expect_send_refused(env, M_VERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=attacker_number)
    expect_send_refused(env, M_UNVERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=attacker_number)
    m = f.get_member(ORG, M_VERIFIED)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_VERIFIED, True)
    assert f.get_member(ORG, M_UNVERIFIED).mfa_phone_number == P_UNVERIFIED
    assert {s.to for s in env.transport.sent} == {P_VERIFIED}  # only the automatic send
    assert "phone.linked" not in event_names(env.events)


def test_destination_different_number_refused_even_with_a_full_session() -> None:
    # A linked phone is replaced only through delete_mfa_phone_number.
    env = make_env()
    f = env.flow
    ist = primary_ist(env, ORG, M_VERIFIED)
    session = f.authenticate_sms_otp(ORG, M_VERIFIED, env.transport.sent[-1].code,
                                     intermediate_session_token=ist).session_token
    expect_send_refused(env, M_VERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=P_NEW,
                        session_token=session)
    assert f.get_member(ORG, M_VERIFIED).mfa_phone_number == P_VERIFIED


def test_destination_missing_refused() -> None:
    env = make_env()
    err = expect_send_refused(env, M_FRESH, "member_phone_number_not_found")
    assert err.status_code == 404
    expect_send_refused(env, M_FRESH, "member_phone_number_not_found", mfa_phone_number=None)


def test_destination_link_on_send_writes_unverified_phone_and_emits_phone_linked() -> None:
    env = make_env()
    f = env.flow
    assert f.policy.link_phone_on == "send"
    ist = primary_ist(env, ORG, M_FRESH)
    assert env.transport.sent == []  # no phone: no automatic send
    mark = env.mark()
    res = f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW, intermediate_session_token=ist)
    assert (res.member.mfa_phone_number, res.member.mfa_phone_number_verified) == (P_NEW, False)
    m = f.get_member(ORG, M_FRESH)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_NEW, False)
    new = env.events_since(mark)
    linked = [e for e in new if e.name == "phone.linked"]
    assert [(e.organization_id, e.member_id, e.phone) for e in linked] == [(ORG, M_FRESH, "XXXXXXX0130")]
    assert "member.updated" in event_names(new)
    assert "otp.sent" in event_names(new)
    assert [s.to for s in env.sent_since(mark)] == [P_NEW]
    # Linked now: a send without a number goes there, another number is a mismatch.
    f.send_sms_otp(ORG, M_FRESH, intermediate_session_token=ist)
    assert env.transport.sent[-1].to == P_NEW
    expect_send_refused(env, M_FRESH, "duplicate_member_phone_number_for_member", mfa_phone_number=P_NEW2,
                        intermediate_session_token=ist)
    # A successful authenticate verifies it.
    f.authenticate_sms_otp(ORG, M_FRESH, env.transport.sent[-1].code, intermediate_session_token=ist)
    m = f.get_member(ORG, M_FRESH)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_NEW, True)


def _link_p_new_through_the_flow(env: Env) -> str:
    link(env, M_FRESH2, P_NEW)
    return P_NEW


@pytest.mark.parametrize(
    ("setup", "phone"),
    [
        (lambda env: P_OTHER, P_OTHER),  # verified phone from the directory
        (lambda env: P_OTHER, "+1 (415) 555-0125"),  # ... written differently
        (lambda env: P_OTHER, "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff15"),
        (lambda env: P_UNVERIFIED, P_UNVERIFIED),  # unverified phone from the directory: linked all the same
        (_link_p_new_through_the_flow, P_NEW),  # linked by the flow
    ],
    ids=["directory-verified", "directory-formatted", "directory-full-width", "directory-unverified",
         "linked-by-the-flow"],
)
def test_destination_number_linked_to_another_member_refused(setup: Callable[[Env], str], phone: str) -> None:
    env = make_env()
    taken = setup(env)
    mark = env.mark()
    err = expect_send_refused(env, M_FRESH, "duplicate_member_phone_number", mfa_phone_number=phone)
    assert err.status_code == 400
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == ""
    assert env.sent_since(mark) == []
    # The owner keeps it; the same number is free in another organization.
    assert link(env, M2_FRESH, taken, organization_id=ORG2) == taken


def test_destination_other_member_keeps_number_in_verify_mode_too() -> None:
    env = make_env(Policy(link_phone_on="verify"))
    expect_send_refused(env, M_FRESH, "duplicate_member_phone_number", mfa_phone_number=P_OTHER)
    assert env.flow.get_member(ORG, M_OTHER).mfa_phone_number == P_OTHER


def test_destination_verify_mode_pending_until_authenticate() -> None:
    env = make_env(Policy(link_phone_on="verify"))
    f = env.flow
    ist = primary_ist(env, ORG, M_FRESH)
    f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW, intermediate_session_token=ist)
    first_code = env.transport.sent[-1].code
    assert env.transport.sent[-1].to == P_NEW
    m = f.get_member(ORG, M_FRESH)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == ("", False)
    assert "phone.linked" not in event_names(env.events)
    # A later send replaces the pending number (no mismatch: nothing is linked) and supersedes the code.
    f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW2, intermediate_session_token=ist)
    second_code = env.transport.sent[-1].code
    assert env.transport.sent[-1].to == P_NEW2
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == ""
    # The pending number is not linked: no number → not found.
    expect_send_refused(env, M_FRESH, "member_phone_number_not_found", intermediate_session_token=ist)
    if first_code != second_code:
        expect_error(lambda: f.authenticate_sms_otp(ORG, M_FRESH, first_code, intermediate_session_token=ist),
                     "otp_code_not_found")
        assert f.get_member(ORG, M_FRESH).mfa_phone_number == ""
    mark = env.mark()
    res = f.authenticate_sms_otp(ORG, M_FRESH, second_code, intermediate_session_token=ist)
    assert res.session_token
    m = f.get_member(ORG, M_FRESH)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_NEW2, True)
    assert res.member.mfa_phone_number == P_NEW2
    linked = [e for e in env.events_since(mark) if e.name == "phone.linked"]
    assert [(e.member_id, e.phone) for e in linked] == [(M_FRESH, "XXXXXXX0131")]
    # The first pending number was never linked: another member of the organization may link it.
    assert link(env, M_FRESH2, P_NEW) == P_NEW


def test_destination_delivery_rejected_rolls_the_link_back() -> None:
    env = make_env()
    f = env.flow
    env.transport.fail_next("rejected")
    err = expect_error(lambda: f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW), "downstream_carrier_error")
    assert err.status_code == 502
    assert env.transport.sent == []
    m = f.get_member(ORG, M_FRESH)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == ("", False)
    # Nothing is left linked: the number is free in the organization and the member may link another one.
    assert link(env, M_FRESH2, P_NEW) == P_NEW
    assert link(env, M_FRESH, P_NEW2) == P_NEW2
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == P_NEW2


def test_destination_delivery_unknown_keeps_the_link() -> None:
    env = make_env()
    f = env.flow
    env.transport.fail_next("unknown")
    expect_error(lambda: f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW), "downstream_carrier_error")
    assert [s.to for s in env.transport.sent] == [P_NEW]
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == P_NEW
    with pytest.raises(MfaError) as ei:
        f.send_sms_otp(ORG, M_FRESH2, mfa_phone_number=P_NEW)
    assert ei.value.error_type == "duplicate_member_phone_number"


@pytest.mark.parametrize("stray", ["555-0123 ext 9", "+1415555\u2603", "\u0663\u0664\u0665\u0666\u0667", "+" + "1" * 16,
                                   "+", "abcd"])
def test_mask_phone_shows_nothing_of_what_is_not_an_e164_number(stray: str) -> None:
    """A directory's or a passed-on answer's stray text in a phone field never reaches an event or log."""
    assert mask_phone(stray) == ""
    assert mask_phone("+14155550123") == "XXXXXXX0123"
