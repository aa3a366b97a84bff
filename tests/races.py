"""The race harness shared by the concurrency tests (a helper module, not a conftest).

``race`` runs ``work(i)`` on n threads released together at a ``threading.Barrier`` and returns every
outcome, ("ok", result) or ("error", exception); ``error_types`` and ``successes`` read them. ``NonAtomicStore``
is the deliberately broken store of the power tests: reads under a ``MemoryStore``'s lock, then a commit that
sleeps and writes blind (the check-then-act bug), so that a race that cannot see it has no power.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mfa_flow import MfaError
from mfa_flow.stores import Entry, MemoryStore, Write
from tests.helpers_rules import wrong

__all__ = [
    "C1_LOSER_ERRORS",
    "NonAtomicStore",
    "Outcome",
    "error_type",
    "error_types",
    "race",
    "successes",
    "wrong_codes",
]

Outcome = tuple[str, Any]  # ("ok", result) or ("error", exception)
#: C1 losers: the IST is consumed (a serialising store answers this) or the code is used (a store that
#: lets the losers read before the winner's commit and retries them answers this).
C1_LOSER_ERRORS = frozenset({"unable_to_auth_otp_code", "intermediate_session_not_found"})


def race(n: int, work: Callable[[int], Any], *, timeout: float = 60.0) -> list[Outcome]:
    """Run ``work(i)`` for i in range(n) on n threads released together at a barrier."""
    barrier = threading.Barrier(n)
    outcomes: list[Outcome | None] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout)
            outcomes[i] = ("ok", work(i))
        except BaseException as exc:  # every outcome is inspected by the test
            outcomes[i] = ("error", exc)

    threads = [threading.Thread(target=worker, args=(i,), name=f"race-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    assert not any(t.is_alive() for t in threads), "a racing thread did not finish in time"
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def error_types(outcomes: Iterable[Outcome]) -> Counter[str]:
    """error_type of every MfaError; any other exception fails the test at once."""
    counts: Counter[str] = Counter()
    for kind, value in outcomes:
        if kind == "error":
            if not isinstance(value, MfaError):
                raise AssertionError(f"a racing call raised {type(value).__name__}, not an MfaError") from value
            counts[value.error_type] += 1
    return counts


def successes(outcomes: Iterable[Outcome]) -> list[Any]:
    return [value for kind, value in outcomes if kind == "ok"]


def wrong_codes(code: str, n: int) -> list[str]:
    """n distinct six-digit codes, none equal to ``code``."""
    return [wrong(code, i) for i in range(n)]


def error_type(call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The ``error_type`` of the MfaError a call raises, or ``"ok"``."""
    try:
        call(*args, **kwargs)
    except MfaError as exc:
        return exc.error_type
    return "ok"


# ------------------------------------------------------------------------------ a deliberately broken store


class _RacyTransaction:
    """Reads under the memory store's lock, then lets go; commit sleeps, then writes blind (no version check)."""

    def __init__(self, inner: MemoryStore, pause: float) -> None:
        self._inner = inner
        self._pause = pause

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        with self._inner.transaction() as tx:  # the lock is held only for the read
            return tx.read(keys)

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        time.sleep(self._pause)  # a window in which every other thread reads the same state
        with self._inner.transaction() as tx:  # a fresh transaction that read nothing: a blind write
            return tx.commit(writes, now)


class NonAtomicStore:
    """A MemoryStore wrapped so that read-decide-commit is NOT atomic: the textbook check-then-act bug."""

    durable = False

    def __init__(self, inner: Any = None, pause: float = 0.003) -> None:
        assert inner is None or isinstance(inner, MemoryStore)
        self.inner = inner if inner is not None else MemoryStore()
        self.pause = pause

    @contextmanager
    def transaction(self) -> Iterator[_RacyTransaction]:
        yield _RacyTransaction(self.inner, self.pause)
