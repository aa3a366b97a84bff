"""Phone numbers: normalise once, compare as E.164, judge the destination by its parsed region and type.

The two halves follow the order of checks (docs/rules.md): :func:`parse_phone` is the argument-shape step
(string, length, normalisation, leading ``+``, parseable); :func:`check_destination` is step 8
(valid, no extension, allowed type, then allowed and supported region).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Collection

import attrs
import phonenumbers

from mfa_flow._numbers import E164_SHAPE, is_own_e164, parse_number, region_and_type
from mfa_flow.arguments import text as plain_text
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
    "region_of",
]

MAX_PHONE_LENGTH = 64
MAX_E164_DIGITS = 15  # ITU-T E.164: at most 15 digits after the +
_UNKNOWN = phonenumbers.PhoneNumberType.UNKNOWN

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
    """NFKC, no whitespace or format characters, no ``tel:`` prefix (docs/rules.md, phones)."""
    if E164_SHAPE.fullmatch(raw):  # already normalised: the common case, and every stored number
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
    raw = plain_text(raw, field, "invalid_phone_number")
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
        number, e164 = parse_number(text)
    except Exception as exc:  # phonenumbers raises more than NumberParseException on hostile input
        raise InvalidPhoneNumber("invalid_phone_number", f"{field}: not a phone number") from exc
    return Phone(e164, number)


def region_of(phone: Phone) -> str | None:
    """The parsed region (``+1 876`` is JM), None when the number has none."""
    return region_and_type(phone.number)[0]


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


@functools.lru_cache(maxsize=4096)
def _canonical_slow(raw: str) -> str:
    try:
        return parse_phone(raw, "member.mfa_phone_number").e164
    except InvalidPhoneNumber:
        return raw


def canonical_phone(raw: str) -> str:
    """A stored number (as a directory wrote it) in normalised E.164, the only form compared (docs/rules.md, phones);
    text that does not parse is kept as it is, to be refused if it is ever used as a destination.
    E.164-shaped text is its own E.164 unless a trunk prefix follows the calling code (``+44020…`` is
    ``+4420…``): without this, such a stored number would escape the duplicate and mismatch checks."""
    if not raw or (E164_SHAPE.fullmatch(raw) and is_own_e164(raw)):
        return raw
    return _canonical_slow(raw)


def mask_phone(e164: str) -> str:
    """Stytch's mask: every digit but the last four replaced by ``X`` (``XXXXXXX0123``). Anything but an E.164
    number (a directory's or an answer's stray text) shows nothing of itself."""
    digits = e164[1:] if e164.startswith("+") else e164
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_E164_DIGITS):
        return ""
    return "X" * max(len(digits) - 4, 0) + digits[-4:]
