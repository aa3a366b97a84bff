"""mfa_flow: SMS one-time-passcode MFA for B2B login flows, with the rules of Stytch's B2B SMS OTP endpoint.

    from mfa_flow import MfaFlow, Policy, Organization, Member, MfaError
"""

import typing

from mfa_flow import _lazy
from mfa_flow._version import __version__
from mfa_flow.clock import Clock, SystemClock
from mfa_flow.diagram import diagram
from mfa_flow.directory import Directory, MemoryDirectory, WritableDirectory
from mfa_flow.errors import ConfigurationError, ErrorType, InvalidPhoneNumber, MfaError
from mfa_flow.events import Event, SendContext
from mfa_flow.flow import MfaFlow
from mfa_flow.policy import Policy
from mfa_flow.records import Member, MfaPolicy, Organization, PrimaryMethod
from mfa_flow.results import (
    AuthenticateResult,
    AuthenticationFactor,
    MemberOptions,
    MemberSession,
    MfaRequired,
    PrimaryAuthResult,
    SendResult,
    SessionCheck,
)

if typing.TYPE_CHECKING:
    from mfa_flow.aio import AsyncMfaFlow

__all__ = [
    "AsyncMfaFlow",
    "AuthenticateResult",
    "AuthenticationFactor",
    "Clock",
    "ConfigurationError",
    "Directory",
    "ErrorType",
    "Event",
    "InvalidPhoneNumber",
    "Member",
    "MemberOptions",
    "MemberSession",
    "MemoryDirectory",
    "MfaError",
    "MfaFlow",
    "MfaPolicy",
    "MfaRequired",
    "Organization",
    "Policy",
    "PrimaryAuthResult",
    "PrimaryMethod",
    "SendContext",
    "SendResult",
    "SessionCheck",
    "SystemClock",
    "WritableDirectory",
    "__version__",
    "diagram",
]


# AsyncMfaFlow loads on first use: it pulls in asyncio (about 25 ms), which a synchronous user never needs.
__getattr__, __dir__ = _lazy.lazy_exports(__name__, {"AsyncMfaFlow": "mfa_flow.aio"})
