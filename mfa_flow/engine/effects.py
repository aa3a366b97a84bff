"""What a call asks its runner to do, one request at a time: the only I/O there is.

A public call is a generator (``FlowEngine._call``) that yields these requests and receives their answers.
``MfaFlow`` performs them directly, ``AsyncMfaFlow`` awaits whatever a plug point returns; neither decides
anything. A request that fails is thrown back into the generator at the point that made it, wrapped in
:class:`Failed` so that only the call protocol handles it: no decision mistakes a store's failure for a
refusal of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, NamedTuple

from mfa_flow.stores import Write

__all__ = ["BEGIN", "END", "Begin", "Commit", "Effect", "End", "Failed", "Invoke", "Read", "Sleep", "invoke"]


class Read(list[str]):
    """Read these keys in the open transaction (one round trip). A list, so building one runs no Python
    code (a NamedTuple's ``__new__`` is a Python function, and every call reads)."""


class Invoke(NamedTuple):
    """Call a plug point (directory, code provider, risk hook): ``fn(*args)``; its answer or error comes back."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


#: Builds an Invoke in C, for the plug-point calls every public call makes.
invoke: Callable[[tuple[Callable[..., Any], tuple[Any, ...]]], Invoke] = partial(tuple.__new__, Invoke)


class Commit(NamedTuple):
    """Commit every write at once if nothing read in this transaction changed; the answer says whether it did."""

    writes: Mapping[str, Write]
    now: float


class Begin:
    """Open a store transaction (a scope that stores able to lock hold until ``End``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "BEGIN"


BEGIN: Final = Begin()


class End(NamedTuple):
    """Close the open transaction, with the exception that ended it (None when it ended normally)."""

    failure: BaseException | None


END: Final = End(None)


class Sleep(NamedTuple):
    """Wait before a re-run (a lost compare-and-set backs off)."""

    seconds: float


Effect = Read | Invoke | Commit | Begin | End | Sleep


class Failed(BaseException):
    """An effect raised ``error``. A BaseException, so a decision's ``except MfaError`` (or ``Exception``)
    never catches it; the call protocol unwraps it. (KeyboardInterrupt and the like are thrown unwrapped.)"""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error
