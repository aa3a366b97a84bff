"""phonenumbers' parse and type matching, done once per number and without its per-call overheads.

Every call that sends parses one number and judges its region and type (docs/rules.md, send step 8); with phonenumbers'
public functions that is most of a login's cost. The answers here are phonenumbers' own, from its metadata
and its helpers, checked equal to ``phonenumbers.parse``, ``region_code_for_number`` and ``number_type`` over
every example number of every region and type and over random digits (tests/test_numbers.py):

- :func:`parse_number` skips ``parse``'s cleaning of arbitrary input for text already in E.164 (every stored
  number), and keeps that text as the E.164 when nothing was stripped; :func:`is_own_e164` tells, without a
  parse, whether E.164-shaped text is its own E.164;
- :func:`region_and_type` keeps the type it matched while finding the region (``number_type`` finds the
  region again and matches the type once more), and matches each number description with a pattern
  compiled once per region instead of a compile-cache lookup and four Python calls per description.

What is looked up per calling code or region (metadata, compiled patterns) is kept in small dicts filled on
first use: a few hundred entries at most, the metadata phonenumbers itself keeps for the process.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberType
from phonenumbers import phonenumberutil as _util

__all__ = ["E164_SHAPE", "is_own_e164", "number_type_of", "parse_number", "region_and_type"]

_UNKNOWN = PhoneNumberType.UNKNOWN
E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")  # "+", a digit 1-9, at most 14 more
_MIN_NSN = 2  # phonenumbers' shortest national significant number
_NATIONAL_PREFIX_KEPT = (
    phonenumbers.ValidationResult.TOO_SHORT,
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    phonenumbers.ValidationResult.INVALID_LENGTH,
)

# phonenumbers' own steps (typed in its stubs), so the answers stay its own.
_REGIONS_BY_CODE = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
_metadata_for_region = PhoneMetadata.metadata_for_region
_metadata_for_code = PhoneMetadata.metadata_for_region_or_calling_code
_region_for_code = phonenumbers.region_code_for_country_code
_CALLING_CODES = {str(code): code for code in _REGIONS_BY_CODE}  # calling codes are prefix-free (ITU E.164)
_strip_national_prefix = _util._maybe_strip_national_prefix_carrier_code  # noqa: SLF001
_test_number_length = _util._test_number_length  # noqa: SLF001
_set_leading_zeros = _util._set_italian_leading_zeros_for_phone_number  # noqa: SLF001


# --- parsing ------------------------------------------------------------------------------------------

def parse_number(text: str) -> tuple[phonenumbers.PhoneNumber, str]:
    """``phonenumbers.parse(text, None)`` and the number's E.164; raises what ``parse`` raises."""
    parsed = _parse_e164(text) if E164_SHAPE.fullmatch(text) else None
    if parsed is not None:
        return parsed
    number = phonenumbers.parse(text, None)
    return number, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _calling_code(digits: str) -> tuple[int, str]:
    """``_extract_country_code(digits)``: the calling code the digits start with (0 when none) and the rest,
    by dict lookups of the first one, two and three digits instead of ``int()`` on each."""
    if digits[:1] not in ("", "0"):
        for size in (1, 2, 3):
            code = _CALLING_CODES.get(digits[:size])
            if code is not None:
                return code, digits[size:]
    return 0, digits


def is_own_e164(text: str) -> bool:
    """Whether text in E.164 shape is the E.164 phonenumbers gives it, or text it refuses.

    ``parse`` changes such text only by stripping a national (trunk) prefix written after the calling code
    (``+44 (0)20…`` kept as ``+44020…``), so text whose national part does not begin with that prefix is
    its own E.164; the rest needs a parse to tell.
    """
    code, national = _calling_code(text[1:])
    if code == 0:
        return True
    metadata, national_prefix = _country(code)
    return metadata is None or national_prefix is None or national_prefix.match(national) is None


def _parse_e164(text: str) -> tuple[phonenumbers.PhoneNumber, str] | None:
    """What ``parse`` does after its input cleaning, in its order, for text that E.164 already cleaned;
    None (an unknown calling code, a number too short) hands the text to ``parse`` for its exact refusal."""
    code, national = _calling_code(text[1:])
    if code == 0 or len(national) < _MIN_NSN:
        return None
    e164 = text
    metadata, national_prefix = _country(code)
    # _maybe_strip_national_prefix_carrier_code changes nothing unless its prefix pattern matches: asked
    # only then, it does not compile that pattern again for every other number.
    if metadata is not None and national_prefix is not None and national_prefix.match(national):
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


_COUNTRIES: dict[int, tuple[PhoneMetadata | None, re.Pattern[str] | None]] = {}  # one per calling code


def _country(code: int) -> tuple[PhoneMetadata | None, re.Pattern[str] | None]:
    """The metadata ``parse`` uses for a calling code, and its national prefix pattern, compiled once."""
    known = _COUNTRIES.get(code)
    if known is None:
        metadata = _metadata_for_code(code, _region_for_code(code))
        prefix = None if metadata is None else metadata.national_prefix_for_parsing
        known = _COUNTRIES[code] = (metadata, re.compile(prefix) if prefix else None)
    return known


# --- region and type ----------------------------------------------------------------------------------

_Desc = tuple[frozenset[int], re.Pattern[str]] | None  # possible lengths (empty: any), the compiled pattern
_TYPED_DESCS = (  # _number_type_helper's order, after the general description
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)


def _compiled(desc: PhoneNumberDesc | None) -> _Desc:
    pattern = None if desc is None else desc.national_number_pattern
    if desc is None or not pattern:
        return None  # _match_national_number: no pattern matches nothing
    return frozenset(desc.possible_length or ()), re.compile(pattern)


def _matches(nsn: str, desc: _Desc) -> bool:
    """_is_number_matching_desc: a possible length (when the description lists any), then the full pattern
    (phonenumbers' match-then-fullmatch is a fullmatch)."""
    if desc is None:
        return False
    lengths, pattern = desc
    return (not lengths or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


class _TypeMatcher:
    """``_number_type_helper`` for one region's metadata, its descriptions compiled once."""

    __slots__ = ("fixed_line", "general", "metadata", "mobile", "same_mobile_and_fixed", "typed")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self.metadata = metadata  # kept alive, so the id it is filed under is never reused
        self.general = _compiled(metadata.general_desc)
        self.typed = [(kind, *d) for name, kind in _TYPED_DESCS if (d := _compiled(getattr(metadata, name)))]
        self.fixed_line = _compiled(metadata.fixed_line)
        self.mobile = _compiled(metadata.mobile)
        self.same_mobile_and_fixed = bool(metadata.same_mobile_and_fixed_line_pattern)

    def __call__(self, nsn: str) -> int:
        if not _matches(nsn, self.general):
            return _UNKNOWN
        size = len(nsn)
        for kind, lengths, pattern in self.typed:  # _matches, inlined: up to eight descriptions per number
            if (not lengths or size in lengths) and pattern.fullmatch(nsn) is not None:
                return kind
        if _matches(nsn, self.fixed_line):
            if self.same_mobile_and_fixed or _matches(nsn, self.mobile):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same_mobile_and_fixed and _matches(nsn, self.mobile):
            return PhoneNumberType.MOBILE
        return _UNKNOWN


_MATCHERS: dict[int, _TypeMatcher] = {}  # id(metadata) -> its matcher: one per region, a few hundred at most


def number_type_of(nsn: str, metadata: PhoneMetadata) -> int:
    """``_number_type_helper(nsn, metadata)``."""
    return _matcher(metadata)(nsn)


def _matcher(metadata: PhoneMetadata) -> _TypeMatcher:
    matcher = _MATCHERS.get(id(metadata))
    if matcher is None or matcher.metadata is not metadata:  # PhoneMetadata is unhashable: filed by id
        matcher = _MATCHERS[id(metadata)] = _TypeMatcher(metadata)
    return matcher


#: A calling code's regions as region_code_for_number walks them: (region, its type matcher or None
#: without metadata, its leading-digits pattern or None), built once per calling code.
_Region = tuple[str, _TypeMatcher | None, re.Pattern[str] | None]
_REGION_LISTS: dict[int, list[_Region]] = {}


def _regions(code: int, regions: tuple[str, ...]) -> list[_Region]:
    found = _REGION_LISTS.get(code)
    if found is None:
        found = []
        for region in regions:
            # A shared code's regions are looked up as region_code_for_number does; a code of its own
            # as number_type does (which also knows the non-geographic "001").
            metadata = _metadata_for_region(region, None) if len(regions) > 1 else _metadata_for_code(code, region)
            leading = None if metadata is None or metadata.leading_digits is None else re.compile(
                metadata.leading_digits)
            found.append((region, None if metadata is None else _matcher(metadata), leading))
        _REGION_LISTS[code] = found
    return found


def region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """``(region_code_for_number(number), number_type(number))``, the type matched once.

    Validity is "a region and a known type for it" (what ``is_valid_number`` computes). For a calling code
    shared by several regions (+1, +7, +44...), phonenumbers finds the region by matching the full type
    against each region without leading digits; the type found on the way is the answer.
    """
    code = number.country_code
    regions = None if code is None else _REGIONS_BY_CODE.get(code)
    if code is None or regions is None:
        return None, _UNKNOWN
    nsn = phonenumbers.national_significant_number(number)
    listed = _regions(code, regions)
    if len(listed) == 1:
        region, matcher, _ = listed[0]
        return region, (_UNKNOWN if matcher is None else matcher(nsn))
    for region, matcher, leading in listed:
        if matcher is None:
            continue
        if leading is not None:
            if leading.match(nsn):
                return region, matcher(nsn)
        else:
            kind = matcher(nsn)
            if kind != _UNKNOWN:
                return region, kind
    return None, _UNKNOWN
