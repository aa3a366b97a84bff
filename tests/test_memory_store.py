"""The memory store: compare-and-set within a transaction, and reclaiming expired records minute by minute."""

from __future__ import annotations

from mfa_flow.stores import MemoryStore, Write
from mfa_flow.stores._base import TTL_GRACE


def commit(store: MemoryStore, writes: dict[str, Write], now: float) -> None:
    with store.transaction() as tx:
        tx.read(list(writes))
        assert tx.commit(writes, now)


def test_expired_records_are_reclaimed_after_their_grace_and_rewritten_ones_stay() -> None:
    store = MemoryStore()
    commit(store, {"short": Write("a", expires_at=100.0), "kept": Write("b", expires_at=100.0),
                   "forever": Write("c")}, now=0.0)
    commit(store, {"kept": Write("b2", expires_at=10_000.0)}, now=50.0)  # rewritten with a later expiry
    assert len(store) == 3
    commit(store, {"other": Write("d")}, now=100.0 + TTL_GRACE - 1)  # still within the grace
    assert len(store) == 4
    commit(store, {"other": Write("e")}, now=100.0 + TTL_GRACE + 120)  # a minute past: "short" goes
    with store.transaction() as tx:
        assert set(tx.read(["short", "kept", "forever", "other"])) == {"kept", "forever", "other"}


def test_a_commit_loses_when_a_read_key_changed_and_a_second_commit_sees_its_own_writes() -> None:
    store = MemoryStore()
    with store.transaction() as tx:
        assert tx.read(["k"]) == {}
        assert tx.commit({"k": Write(1)}, 0.0)
        assert tx.commit({"k": Write(2)}, 0.0)  # checks against the version the first commit wrote
    with store.transaction() as tx:
        entry = tx.read(["k"])["k"]
        assert entry.value == 2
        store._data["k"] = (entry.version + 1000, 3, None)  # another writer, bypassing the lock
        assert not tx.commit({"k": Write(4)}, 0.0)
    with store.transaction() as tx:
        assert tx.read(["k"])["k"].value == 3
