"""mfa_flow._numbers answers exactly what phonenumbers answers: parse, E.164, region, number type.

Every example number of every region and type, with digits dropped, added and changed (invalid and
national-prefix variants), and random digits; the type matcher also against every region's metadata, not
only the number's own.
"""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from phonenumbers import phonenumberutil

from mfa_flow import MfaError
from mfa_flow._numbers import _calling_code, is_own_e164, number_type_of, parse_number, region_and_type
from mfa_flow.phone import canonical_phone, parse_phone
from tests.test_properties import example_numbers

E164_TEXT = re.compile(r"\+[1-9][0-9]{1,14}")


def parsed_or_none(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text)
    except phonenumbers.NumberParseException:
        return None


def variants(e164: str) -> tuple[str, ...]:
    """The number, a digit changed, dropped or added, and a 0 / 00 / 1 after the calling code."""
    return (e164, e164[:-1] + str((int(e164[-1]) + 1) % 10), e164[:-1], e164 + "0", e164[:3] + "0" + e164[3:],
            e164[:3] + "00" + e164[3:], e164[:2] + "1" + e164[2:])


def phonenumbers_pair(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    return phonenumbers.region_code_for_number(number), phonenumbers.number_type(number)


def assert_parsed_as_phonenumbers_does(text: str) -> None:
    """parse_number (and so parse_phone) gives phonenumbers.parse's number and E.164, and refuses what it
    refuses."""
    expected = parsed_or_none(text)
    try:
        got = parse_number(text)
    except phonenumbers.NumberParseException:
        got = None
    if expected is None:
        assert got is None, text
        with pytest.raises(MfaError) as refused:
            parse_phone(text)
        assert refused.value.error_type == "invalid_phone_number"
        return
    assert got is not None, text
    number, e164 = got
    assert number == expected, text
    assert e164 == phonenumbers.format_number(expected, phonenumbers.PhoneNumberFormat.E164), text
    assert parse_phone(text).e164 == e164


def test_parse_number_is_phonenumbers_parse_for_every_example_number_and_variant() -> None:
    checked = 0
    for e164 in example_numbers():
        for text in variants(e164):
            if E164_TEXT.fullmatch(text):
                assert_parsed_as_phonenumbers_does(text)
                checked += 1
    assert checked > 5 * len(example_numbers())


@given(digits=st.text("0123456789", min_size=1, max_size=14), first=st.sampled_from("123456789"))
def test_parse_number_is_phonenumbers_parse_for_any_e164_digits(digits: str, first: str) -> None:
    assert_parsed_as_phonenumbers_does("+" + first + digits)


def test_region_and_type_is_phonenumbers_pair_for_every_example_number_and_variant() -> None:
    checked = 0
    for e164 in example_numbers():
        for text in variants(e164):
            number = parsed_or_none(text)
            if number is not None:
                assert region_and_type(number) == phonenumbers_pair(number), text
                checked += 1
    assert checked > 5 * len(example_numbers())


@given(digits=st.text("0123456789", min_size=2, max_size=17))
def test_region_and_type_is_phonenumbers_pair_for_any_digits(digits: str) -> None:
    number = parsed_or_none("+" + digits)
    assume(number is not None)
    assert region_and_type(number) == phonenumbers_pair(number)


def test_number_type_is_phonenumbers_type_helper_against_every_region() -> None:
    """Each example number's national number, typed against every region's metadata: the compiled matcher
    and phonenumbers' _number_type_helper agree everywhere, including on UNKNOWN."""
    metadata = [phonenumbers.PhoneMetadata.metadata_for_region(r) for r in sorted(phonenumbers.SUPPORTED_REGIONS)]
    metadata += [phonenumbers.PhoneMetadata.metadata_for_nongeo_region(c)
                 for c in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)]
    national = sorted({phonenumbers.national_significant_number(phonenumbers.parse(e)) for e in example_numbers()})
    kinds = set()
    for meta in metadata:
        assert meta is not None
        for nsn in national:
            expected = phonenumberutil._number_type_helper(nsn, meta)  # the reference
            assert number_type_of(nsn, meta) == expected, (meta.id, nsn)
            kinds.add(expected)
    assert len(kinds) >= 8, "the sample must reach most number types"


@given(digits=st.text("0123456789", max_size=17))
def test_calling_code_is_phonenumbers_extract_country_code(digits: str) -> None:
    assert _calling_code(digits) == phonenumberutil._extract_country_code(digits)


def test_is_own_e164_and_canonical_phone_agree_with_parse_for_every_example_number_and_variant() -> None:
    """E.164-shaped text is its own E.164 exactly when parsing does not change it (or refuses it); a trunk
    prefix after the calling code is where they differ, and canonical_phone then gives the parsed E.164."""
    differ = 0
    for e164 in example_numbers():
        for text in variants(e164):
            if not E164_TEXT.fullmatch(text):
                continue
            parsed = parsed_or_none(text)
            expected = text if parsed is None else phonenumbers.format_number(
                parsed, phonenumbers.PhoneNumberFormat.E164)
            if expected != text:
                differ += 1
                assert not is_own_e164(text), text
            assert canonical_phone(text) == expected, text
    assert differ > 50, "the variants must include trunk prefixes that parsing strips"
