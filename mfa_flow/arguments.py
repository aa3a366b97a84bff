"""A caller's arguments made safe to look at, before any rule does.

A ``str`` or ``int`` subclass can override ``__hash__``, ``__eq__``, ``__len__``, ``lower()``, comparisons and
more: looking at it would run the caller's code, which may raise anything. Each string and number argument is
first copied into a plain ``str`` or ``int`` by the built-in types' own methods (which call no override), and a
string holding a lone surrogate (``"\\ud800"``, which ``json.loads`` makes from ``"\\\\ud800"``) is refused: it
cannot be encoded, hashed as a token or stored. Refusals name the field and the type, never the value.
"""

from __future__ import annotations

from mfa_flow.errors import MfaError, RequestError, error_for

__all__ = ["plain_int", "plain_str", "text"]


def plain_str(value: str) -> str:
    """An exact ``str`` copy of a ``str`` (of a subclass: without calling any of its methods)."""
    return value if type(value) is str else str.__getitem__(value, slice(None))


def plain_int(value: int) -> int:
    """An exact ``int`` copy of an ``int`` (of a subclass: without calling any of its methods)."""
    return value if type(value) is int else int.__index__(value)


def text(value: object, field: str, error_type: str = "bad_request") -> str:
    """``value`` as a plain, encodable string; else ``error_type`` naming ``field`` (and the type, if not text)."""
    if not isinstance(value, str):
        raise _refused(error_type, f"{field}: must be a string, not {type(value).__name__}")
    value = plain_str(value)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _refused(error_type, f"{field}: not valid text (it holds a lone surrogate)") from None
    return value


def _refused(error_type: str, message: str) -> MfaError:
    return RequestError(error_type, message) if error_type == "bad_request" else error_for(error_type, message)
