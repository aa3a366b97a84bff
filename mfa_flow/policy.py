"""The tunable numbers of the flow (docs/policy.md). Limits and thresholds are tunable; the rules are not."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from mfa_flow.errors import ConfigurationError
from mfa_flow.phone import NUMBER_TYPE_NAMES, parse_phone

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DEFAULT_BLOCKED_NUMBER_TYPES", "Policy", "shipped_unsupported_regions"]

Window = tuple[int, float]

DEFAULT_BLOCKED_NUMBER_TYPES = frozenset({"PREMIUM_RATE", "SHARED_COST", "TOLL_FREE", "UAN", "VOICEMAIL"})

#: NIST SP 800-63B: an out-of-band secret lives at most 10 minutes; at most 100 consecutive failures.
MAX_OTP_TTL = 600
MAX_LOCKOUT_THRESHOLD = 100
SESSION_MINUTES_RANGE = (5, 527040)


@functools.cache  # the file ships with the package: read once per process, not once per Policy
def shipped_unsupported_regions() -> frozenset[str]:
    """The unsupported-country list shipped with the package (ISO 3166-1 alpha-2)."""
    from importlib import resources  # here: without site it costs `import mfa_flow` ~4 ms

    text = resources.files("mfa_flow").joinpath("data/unsupported_regions.txt").read_text("utf-8")
    return frozenset(
        code for line in text.splitlines() if (code := line.split("#", 1)[0].strip())
    )


def _positive_number(field: str, value: object, *, maximum: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= maximum:
        bound = "" if maximum == math.inf else f" and at most {maximum:g}"
        raise ConfigurationError(f"Policy.{field}: must be a number greater than 0{bound}, got {value!r}")


def _positive_int(field: str, value: object, *, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"Policy.{field}: must be an integer of at least 1, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"Policy.{field}: must be at most {maximum}, got {value!r}")


def _window(field: str, value: object, *, optional: bool) -> Window | None:
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"Policy.{field}: this limit cannot be switched off")
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigurationError(f"Policy.{field}: must be (count, seconds), got {value!r}")
    count, seconds = value
    _positive_int(f"{field}[0] (count)", count)
    _positive_number(f"{field}[1] (seconds)", seconds)
    return (count, float(seconds))


def _regions(field: str, value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"Policy.{field}: must be a collection of ISO 3166 alpha-2 codes")
    codes = list(value)
    for code in codes:
        if not (isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha()):
            raise ConfigurationError(f"Policy.{field}: {code!r} is not an ISO 3166 alpha-2 code")
    return frozenset(code.upper() for code in codes)


def _number_types(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError("Policy.blocked_number_types: must be a collection of number type names")
    items = list(value)
    for name in items:
        if not isinstance(name, str) or name not in NUMBER_TYPE_NAMES:
            raise ConfigurationError(f"Policy.blocked_number_types: unknown number type {name!r}")
    names = frozenset(items)
    missing = DEFAULT_BLOCKED_NUMBER_TYPES - names
    if missing:
        # Premium-rate and friends are a rule, not a limit: a policy may add types, never drop these.
        raise ConfigurationError(
            f"Policy.blocked_number_types: must keep {sorted(missing)} blocked (SMS-pumping protection)"
        )
    return names


def _test_numbers(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError("Policy.test_numbers: must be a collection of E.164 strings")
    numbers: set[str] = set()
    for raw in value:
        try:
            numbers.add(parse_phone(raw, "Policy.test_numbers").e164)
        except Exception as exc:
            raise ConfigurationError(f"Policy.test_numbers: {raw!r} is not a phone number") from exc
    return frozenset(numbers)


@attrs.frozen(kw_only=True)
class Policy:
    """Durations in seconds; every value is checked at construction and a refusal names the field."""

    otp_ttl: float = 120
    ist_ttl: float = 600
    default_session_minutes: int = 60
    max_attempts_per_code: int = 5
    lockout_threshold: int = 10
    lockout_duration: float = 3600
    send_limit_per_member: Window = (5, 600.0)
    send_limit_per_phone: Window = (5, 600.0)
    send_limit_per_region: Window | None = None
    send_limit_global: Window | None = None
    resend_cooldown: float = 0
    inactivity_timeout: float = 1800
    resend_on_inactivity: bool = True
    allowed_regions: frozenset[str] = frozenset({"US", "CA"})
    unsupported_regions: frozenset[str] = attrs.field(factory=shipped_unsupported_regions)
    blocked_number_types: frozenset[str] = DEFAULT_BLOCKED_NUMBER_TYPES
    test_numbers: frozenset[str] = frozenset()
    link_phone_on: Literal["send", "verify"] = "send"
    uniform_refusals: bool = False

    # Derived once so the hot path does no lookups.
    blocked_type_values: frozenset[int] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        set_ = object.__setattr__
        _positive_number("otp_ttl", self.otp_ttl, maximum=MAX_OTP_TTL)
        _positive_number("ist_ttl", self.ist_ttl)
        _positive_int("default_session_minutes", self.default_session_minutes)
        low, high = SESSION_MINUTES_RANGE
        if not low <= self.default_session_minutes <= high:
            raise ConfigurationError(f"Policy.default_session_minutes: must be within {low}..{high}")
        _positive_int("max_attempts_per_code", self.max_attempts_per_code)
        _positive_int("lockout_threshold", self.lockout_threshold, maximum=MAX_LOCKOUT_THRESHOLD)
        _positive_number("lockout_duration", self.lockout_duration)
        set_(self, "send_limit_per_member", _window("send_limit_per_member", self.send_limit_per_member,
                                                    optional=False))
        set_(self, "send_limit_per_phone", _window("send_limit_per_phone", self.send_limit_per_phone,
                                                   optional=False))
        set_(self, "send_limit_per_region", _window("send_limit_per_region", self.send_limit_per_region,
                                                    optional=True))
        set_(self, "send_limit_global", _window("send_limit_global", self.send_limit_global, optional=True))
        cooldown = self.resend_cooldown
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise ConfigurationError(f"Policy.resend_cooldown: must be a number of at least 0, got {cooldown!r}")
        _positive_number("inactivity_timeout", self.inactivity_timeout)
        for name in ("resend_on_inactivity", "uniform_refusals"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"Policy.{name}: must be True or False")
        set_(self, "allowed_regions", _regions("allowed_regions", self.allowed_regions))
        set_(self, "unsupported_regions", _regions("unsupported_regions", self.unsupported_regions))
        set_(self, "blocked_number_types", _number_types(self.blocked_number_types))
        set_(self, "test_numbers", _test_numbers(self.test_numbers))
        if self.link_phone_on not in ("send", "verify"):
            raise ConfigurationError(
                f"Policy.link_phone_on: must be 'send' or 'verify', got {self.link_phone_on!r}"
            )
        set_(self, "blocked_type_values", frozenset(NUMBER_TYPE_NAMES[n] for n in self.blocked_number_types))

    @classmethod
    def hardened(cls, **overrides: Any) -> Policy:
        """Stricter defaults: a cooldown, link on verify, uniform refusals, earlier lock, tighter limits."""
        values: dict[str, Any] = {
            "resend_cooldown": 30,
            "link_phone_on": "verify",
            "uniform_refusals": True,
            "lockout_threshold": 5,
            "send_limit_per_member": (3, 600),
            "send_limit_per_phone": (3, 600),
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from plain data (the TOML keys are the field names); unknown keys are refused."""
        fields = {f.name for f in attrs.fields(cls) if f.init}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigurationError(f"Policy: unknown setting(s) {', '.join(map(repr, unknown))}")
        return cls(**dict(data))

    @classmethod
    def from_toml(cls, path: str | Path) -> Policy:
        """Read a policy from a TOML file whose keys are the field names (``[policy]`` or top level); a refusal
        names the file, the key and the value, as every policy file's does (``mfa_flow.files``)."""
        from mfa_flow.files import load_policy  # files builds on this module

        return load_policy(path)

