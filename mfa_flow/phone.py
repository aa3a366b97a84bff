"""Phone numbers: normalise once, compare as E.164, judge the destination by its parsed region and type.

The two halves follow the order of checks (spec §5): :func:`parse_phone` is the argument-shape step
(string, length, normalisation, leading ``+``, parseable); :func:`check_destination` is step 8
(valid, no extension, allowed type, then allowed and supported region).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection

import attrs
import phonenumbers
from phonenumbers import phonenumberutil as _phonenumberutil

from mfa_flow.errors import InvalidPhoneNumber

__all__ = [
    "MAX_PHONE_LENGTH",
    "NUMBER_TYPE_NAMES",
    "Phone",
    "canonical_phone",
    "check_destination",
    "mask_phone",
    "normalise_phone_text",
    "parse_phone",
    "region_and_type",
]

MAX_PHONE_LENGTH = 64
_UNKNOWN = phonenumbers.PhoneNumberType.UNKNOWN
# phonenumbers' own lookups, used by region_and_type to do their work once instead of twice.
_REGIONS_BY_CODE = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
_metadata_for_region = phonenumbers.PhoneMetadata.metadata_for_region
_metadata_for_code = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code
_type_of = _phonenumberutil._number_type_helper  # noqa: SLF001 - the type matcher number_type uses (typed in its stubs)
_region_for_code = phonenumbers.region_code_for_country_code
_extract_country_code = _phonenumberutil._extract_country_code  # noqa: SLF001 - parse's own steps (typed in its stubs)
_strip_national_prefix = _phonenumberutil._maybe_strip_national_prefix_carrier_code  # noqa: SLF001
_test_number_length = _phonenumberutil._test_number_length  # noqa: SLF001
_set_leading_zeros = _phonenumberutil._set_italian_leading_zeros_for_phone_number  # noqa: SLF001
_MIN_NSN = 2  # phonenumbers' shortest national significant number
_LEADING_DIGITS: dict[str, re.Pattern[str]] = {}  # per region with leading digits: a few hundred at most
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")

#: phonenumbers' PhoneNumberType values by name, for policies written as strings.
NUMBER_TYPE_NAMES: dict[str, int] = {
    name: value
    for name, value in vars(phonenumbers.PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}


@attrs.frozen(slots=True)
class Phone:
    """A parsed phone number; ``e164`` is the only form ever compared or stored."""

    e164: str
    number: phonenumbers.PhoneNumber = attrs.field(repr=False, eq=False)


def normalise_phone_text(raw: str) -> str:
    """NFKC, no whitespace or format characters, no ``tel:`` prefix (spec §6.1)."""
    if _E164.fullmatch(raw):  # already normalised: the common case, and every stored number
        return raw
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")
    if text[:4].lower() == "tel:":
        text = text[4:]
    return text


def parse_phone(raw: object, field: str = "mfa_phone_number") -> Phone:
    """Parse a phone given by a caller; every refusal is ``invalid_phone_number`` naming ``field``."""
    if not isinstance(raw, str):
        raise InvalidPhoneNumber("invalid_phone_number", f"{field}: must be a string in E.164 form")
    if len(raw) > MAX_PHONE_LENGTH:
        raise InvalidPhoneNumber(
            "invalid_phone_number", f"{field}: longer than {MAX_PHONE_LENGTH} characters"
        )
    text = normalise_phone_text(raw)
    if not text.startswith("+"):
        raise InvalidPhoneNumber(
            "invalid_phone_number", f"{field}: must start with '+' and a country code (E.164)"
        )
    try:
        number, e164 = _parse_number(text)
    except Exception as exc:  # phonenumbers raises more than NumberParseException on hostile input
        raise InvalidPhoneNumber("invalid_phone_number", f"{field}: not a phone number") from exc
    return Phone(e164, number)


_NATIONAL_PREFIX_KEPT = (
    phonenumbers.ValidationResult.TOO_SHORT,
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    phonenumbers.ValidationResult.INVALID_LENGTH,
)


def _parse_e164(text: str) -> tuple[phonenumbers.PhoneNumber, str] | None:
    """``phonenumbers.parse(text)`` and its E.164 for text already in E.164 (every stored number), in a
    fraction of the time.

    ``parse`` first cleans arbitrary input (extensions, IDDs, punctuation, ``phone-context``), none of which
    E.164 text can hold; what it does after that is done here with its own helpers, in its order. ``None``
    (an unknown calling code, a number too short) hands the text to ``parse`` for its exact refusal. The
    result equals ``parse``'s, checked over every example number and random E.164 digits.
    """
    code, national = _extract_country_code(text[1:])
    if code == 0 or len(national) < _MIN_NSN:
        return None
    e164 = text
    metadata = _metadata_for_code(code, _region_for_code(code))
    if metadata is not None:
        _, stripped, changed = _strip_national_prefix(national, metadata)
        if changed and _test_number_length(stripped, metadata) not in _NATIONAL_PREFIX_KEPT:
            national = stripped
            e164 = f"+{code}{national}"  # leading zeros stay in the NSN, so this is what format_number gives
    if len(national) < _MIN_NSN:
        return None
    number = phonenumbers.PhoneNumber(country_code=code)
    _set_leading_zeros(national, number)
    number.national_number = int(national)
    return number, e164


def _parse_number(text: str) -> tuple[phonenumbers.PhoneNumber, str]:
    """``phonenumbers.parse(text, None)`` and its E.164: the one parse of a call (§6.1), by the fast path
    when it can."""
    parsed = _parse_e164(text) if _E164.fullmatch(text) else None
    if parsed is not None:
        return parsed
    number = phonenumbers.parse(text, None)
    return number, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_destination(
    phone: Phone,
    *,
    allowed_regions: Collection[str],
    unsupported_regions: Collection[str],
    blocked_number_types: Collection[int],
    test_numbers: Collection[str],
) -> str | None:
    """Refuse a destination that may not receive a code; return its parsed region.

    Test numbers skip validity, type and region (they exist so a sandbox number such as
    ``+10000000000`` can be used); an extension is refused for every number.
    """
    number = phone.number
    is_test = phone.e164 in test_numbers
    region, kind = region_and_type(number)
    if not is_test and kind == _UNKNOWN:
        raise InvalidPhoneNumber("invalid_phone_number", "phone number: not a valid number")
    if number.extension:
        raise InvalidPhoneNumber("invalid_phone_number", "phone number: extensions are not accepted")
    if is_test:
        return region
    if kind in blocked_number_types:
        raise InvalidPhoneNumber("invalid_phone_number", "phone number: this type of number is refused")
    if region not in allowed_regions:
        raise InvalidPhoneNumber(
            "invalid_phone_number_country_code", f"phone number: region {region} is not allowed"
        )
    if region in unsupported_regions:
        raise InvalidPhoneNumber(
            "invalid_phone_number_country_code", f"phone number: region {region} is not supported"
        )
    return region


def region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """``(region_code_for_number, number_type)`` with the type matched once.

    Validity is "a region and a known type for it" (what ``is_valid_number`` computes). For a calling
    code shared by several regions (+1, +7, +44...), phonenumbers finds the region by matching the full
    type against each region without leading digits, then ``number_type`` finds the region again and
    matches the type once more; here the type found while finding the region is kept. The result is the
    same pair, checked against phonenumbers over every example number of every region and type.
    """
    code = number.country_code
    regions = None if code is None else _REGIONS_BY_CODE.get(code)
    if code is None or regions is None:
        return None, _UNKNOWN
    nsn = phonenumbers.national_significant_number(number)
    if len(regions) > 1:
        for region in regions:
            metadata = _metadata_for_region(region, None)
            if metadata is None:
                continue
            if metadata.leading_digits is not None:
                pattern = _LEADING_DIGITS.get(metadata.leading_digits)
                if pattern is None:
                    pattern = _LEADING_DIGITS[metadata.leading_digits] = re.compile(metadata.leading_digits)
                if pattern.match(nsn):
                    return region, _type_of(nsn, metadata)
            else:
                kind = _type_of(nsn, metadata)
                if kind != _UNKNOWN:
                    return region, kind
        return None, _UNKNOWN
    region = regions[0]
    metadata = _metadata_for_code(code, region)
    return region, (_UNKNOWN if metadata is None else _type_of(nsn, metadata))


@functools.lru_cache(maxsize=4096)
def _canonical_slow(raw: str) -> str:
    try:
        return parse_phone(raw, "member.mfa_phone_number").e164
    except InvalidPhoneNumber:
        return raw


def canonical_phone(raw: str) -> str:
    """A stored number (as a directory wrote it) in normalised E.164, the only form compared (§6.1);
    text that does not parse is kept as it is, to be refused if it is ever used as a destination."""
    if not raw or _E164.fullmatch(raw):
        return raw
    return _canonical_slow(raw)


def mask_phone(e164: str) -> str:
    """Stytch's mask: every digit but the last four replaced by ``X`` (``XXXXXXX0123``)."""
    if not e164:
        return ""
    digits = e164.lstrip("+")
    return "X" * max(len(digits) - 4, 0) + digits[-4:]
