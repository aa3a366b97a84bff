"""Redis stores (docs/concepts.md): ``RedisStore`` on redis-py, ``AsyncRedisStore`` on ``redis.asyncio``.

Layout: every record lives under ``prefix + key`` as the string ``"<version>|<json>"`` (the JSON of
``mfa_flow.stores._codec``). ``prefix + "version"`` is a counter that only ever grows: every write takes a
fresh version from it, so versions never repeat, also across delete and re-create.

Round trips per transaction: each ``read`` is one ``MGET`` of the keys it is given (all known up front);
``commit`` is one ``EVALSHA`` of a Lua script that compares every version read (absent = 0) and, only if all
still hold, applies every write — one atomic compare-and-set on a single node. Only after ``SCRIPT FLUSH`` or a
server restart does a commit cost one more round trip (``EVAL``, which caches the script again).

TTLs: a write with ``expires_at`` gets ``PEXPIRE`` ((expires_at − now) + TTL_GRACE) ms, at least 1; a write
without one is a plain ``SET``, which drops any TTL the key had (a ``PERSIST``). The flow checks every expiry
itself, so a key whose TTL was removed revives nothing; TTLs only keep Redis from filling up.

Eviction would be unsafe (evicting the failure guard unlocks a member, evicting a send window resets a limit,
evicting the version counter lets versions repeat), so the store checks ``maxmemory-policy``: anything but
``noeviction`` warns (``EvictionPolicyWarning``) or, with ``require_noeviction=True``, refuses with
``ConfigurationError``; when ``CONFIG GET`` is not permitted (managed Redis, ACLs) it warns and goes on.
``RedisStore`` checks in its constructor; ``AsyncRedisStore`` checks on its first transaction, or earlier
when you ``await store.check()`` at start-up (recommended: a refusal then happens there and not in a call).

Failures: any Redis error (connection dropped, timeout, script error) or an unreadable record raises
``StoreFailure`` (``internal_server_error``) and the flow fails closed. redis-py's own reconnect-and-retry
stays as configured on the client: replaying a commit is harmless, because each commit leaves a receipt
for 60 s and a replay of a commit that was already applied answers what the first run answered.

redis-py is imported when a store is built, so ``import mfa_flow.stores`` works without it; building a
store without it raises ``ConfigurationError`` naming ``pip install mfa_flow[redis]``. Redis Cluster is out
of scope (the script touches keys of many hash slots).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import math
import secrets
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, Final, Self

from mfa_flow.errors import ConfigurationError, StoreFailure
from mfa_flow.stores._base import TTL_GRACE, Entry, Write
from mfa_flow.stores._codec import decode, encode

__all__ = ["AsyncRedisStore", "EvictionPolicyWarning", "RedisStore"]

logger = logging.getLogger("mfa_flow")

_INSTALL_HINT: Final = "pip install mfa_flow[redis]"

#: KEYS[1] the version counter, KEYS[2] this commit's receipt, KEYS[3..n+2] the keys read, then the keys written.
#: ARGV[1] n, ARGV[2..n+1] the versions read (0 = absent), then per write: the JSON ('' = delete) and a TTL
#: in ms (0 = none). Answers 0 when a version changed (nothing written), else the new versions (0 = deleted).
#: The receipt makes a replayed commit (redis-py retrying after a dropped connection) answer what the first
#: run answered instead of losing its compare-and-set, so the flow never re-runs a call that took effect.
_COMMIT_LUA: Final = """
local done = redis.call('GET', KEYS[2])
if done then
  return cjson.decode(done)
end
local n = tonumber(ARGV[1])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i + 2])
  local v = 0
  if cur then
    local bar = string.find(cur, '|', 1, true)
    v = bar and tonumber(string.sub(cur, 1, bar - 1)) or -1
  end
  if v ~= tonumber(ARGV[i + 1]) then
    return 0
  end
end
local out = {}
local a = n + 2
for k = n + 3, #KEYS do
  local body, ttl = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  if body == '' then
    redis.call('DEL', KEYS[k])
    out[#out + 1] = 0
  else
    local version = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[k], string.format('%d|', version) .. body)
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[k], ttl)
    end
    out[#out + 1] = version
  end
end
redis.call('SET', KEYS[2], cjson.encode(out), 'PX', 60000)
return out
"""
_COMMIT_SHA: Final = hashlib.sha1(_COMMIT_LUA.encode(), usedforsecurity=False).hexdigest()


class EvictionPolicyWarning(RuntimeWarning):
    """Redis may evict keys (``maxmemory-policy`` is not ``noeviction``), or the policy could not be read."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"the Redis stores need redis-py: {_INSTALL_HINT}") from exc


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ttl_ms(expires_at: float, now: float) -> int:
    return max(1, math.ceil(((expires_at - now) + TTL_GRACE) * 1000))


class _Core:
    """Everything but the I/O, shared by the sync and async stores: keys, script arguments, replies."""

    __slots__ = ("errors", "noscript", "prefix", "require_noeviction", "response_error", "version_key")

    def __init__(self, redis: Any, prefix: object, require_noeviction: object) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("prefix: must be a string")
        if not isinstance(require_noeviction, bool):
            raise ConfigurationError("require_noeviction: must be True or False")
        self.prefix = prefix
        self.version_key = prefix + "version"
        self.require_noeviction = require_noeviction
        self.errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self.noscript: type[BaseException] = redis.exceptions.NoScriptError
        #: CONFIG refused, renamed away, or not permitted by an ACL (NoPermissionError is one).
        self.response_error: type[BaseException] = redis.exceptions.ResponseError

    # --- read: one MGET ------------------------------------------------------------------------------

    def read_request(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        names = list(dict.fromkeys(keys))
        return names, [self.prefix + name for name in names]

    def read_reply(self, names: list[str], replies: list[Any], seen: dict[str, int]) -> dict[str, Entry]:
        """Parse the MGET answer; remember each version read (the first read of a key wins)."""
        if len(replies) != len(names):
            raise StoreFailure("internal_server_error", "store: Redis answered a read with the wrong length")
        out: dict[str, Entry] = {}
        for name, raw in zip(names, replies, strict=True):
            if raw is None:
                seen.setdefault(name, 0)
                continue
            version, value = self._parse(raw)
            seen.setdefault(name, version)
            out[name] = Entry(version, value)
        return out

    @staticmethod
    def _parse(raw: object) -> tuple[int, object]:
        try:
            text = _text(raw) if isinstance(raw, bytes | str) else None
            if text is None:
                raise ValueError("not a string")  # noqa: TRY301 - one path for every malformed record
            version, bar, body = text.partition("|")
            if not bar or not version.isdigit():
                raise ValueError("no version")  # noqa: TRY301
            return int(version), decode(body)
        except ValueError as exc:
            raise StoreFailure("internal_server_error", "store: a record could not be read") from exc

    # --- commit: one EVALSHA --------------------------------------------------------------------------

    def commit_request(self, seen: Mapping[str, int], writes: Mapping[str, Write],
                       now: float) -> tuple[list[str], list[str | int]]:
        keys = [self.version_key, f"{self.prefix}commit:{secrets.token_hex(12)}"]
        args: list[str | int] = [len(seen)]
        for name, version in seen.items():
            keys.append(self.prefix + name)
            args.append(version)
        for name, write in writes.items():
            keys.append(self.prefix + name)
            if write.value is None:
                args += ["", 0]
            else:
                args += [encode(write.value), 0 if write.expires_at is None else _ttl_ms(write.expires_at, now)]
        return keys, args

    @staticmethod
    def commit_reply(reply: object, seen: dict[str, int], writes: Mapping[str, Write]) -> bool:
        """True when applied; the keys written and read now hold the versions the script gave them."""
        if reply == 0:
            return False
        if not isinstance(reply, list) or len(reply) != len(writes):
            raise StoreFailure("internal_server_error", "store: Redis answered a commit unexpectedly")
        for name, version in zip(writes, reply, strict=True):
            if name in seen:
                seen[name] = int(version)
        return True

    # --- the eviction-policy check --------------------------------------------------------------------

    def judge_policy(self, reply: object, refused: BaseException | None, stacklevel: int) -> None:
        """Warn or refuse unless the CONFIG GET answer says ``noeviction``."""
        if refused is not None:
            warnings.warn(EvictionPolicyWarning(
                f"mfa_flow: could not read Redis maxmemory-policy ({type(refused).__name__}: CONFIG GET is not "
                "permitted); make sure it is noeviction, or evictions can unlock members and reset limits"),
                stacklevel=stacklevel + 1)
            return
        values = [_text(v) for v in reply.values()] if isinstance(reply, Mapping) else []
        if not values:
            warnings.warn(EvictionPolicyWarning(
                "mfa_flow: Redis did not report maxmemory-policy; make sure it is noeviction, or evictions "
                "can unlock members and reset limits"), stacklevel=stacklevel + 1)
            return
        policy = values[0]
        if policy == "noeviction":
            return
        message = (f"Redis maxmemory-policy is {policy!r}: an eviction can silently unlock a member or reset "
                   "a send limit; set maxmemory-policy noeviction")
        if self.require_noeviction:
            raise ConfigurationError(f"require_noeviction: {message}")
        warnings.warn(EvictionPolicyWarning(f"mfa_flow: {message}"), stacklevel=stacklevel + 1)

    # --- failures -------------------------------------------------------------------------------------

    @contextmanager
    def failing_closed(self, what: str) -> Iterator[None]:
        """A Redis or socket error is a store failure (logged, without any record's content)."""
        try:
            yield
        except self.errors as exc:
            logger.exception("mfa_flow: Redis %s failed (%s); failing closed", what, type(exc).__name__)
            raise StoreFailure("internal_server_error", f"store: Redis {what} failed") from exc


def _client(redis: Any, url_or_client: object, *, asynchronous: bool) -> tuple[Any, bool]:
    """The client to use, and whether the store owns (and closes) it."""
    kind = "AsyncRedisStore" if asynchronous else "RedisStore"
    if isinstance(url_or_client, str):
        try:
            return redis.Redis.from_url(url_or_client), True
        except ValueError as exc:
            # the URL may hold a password: the message does not repeat it
            raise ConfigurationError(f"url_or_client: not a redis://, rediss:// or unix:// URL ({kind})") from exc
    execute = getattr(url_or_client, "execute_command", None)
    if not all(callable(getattr(url_or_client, name, None)) for name in ("mget", "evalsha", "eval", "config_get")):
        raise ConfigurationError(f"url_or_client: a redis:// URL or a redis-py client ({kind})")
    if inspect.iscoroutinefunction(execute) != asynchronous:
        other = "RedisStore" if asynchronous else "AsyncRedisStore"
        raise ConfigurationError(f"url_or_client: {'a synchronous' if asynchronous else 'an asyncio'} redis "
                                 f"client; use {other}")
    return url_or_client, False


# --- synchronous ----------------------------------------------------------------------------------------


class _TransactionBase:
    """What a transaction holds: the shared core, the client, and the versions it read."""

    __slots__ = ("_core", "_redis", "_seen")

    def __init__(self, core: _Core, client: Any) -> None:
        self._core = core
        self._redis = client
        self._seen: dict[str, int] = {}


class _Transaction(_TransactionBase):
    """One read-decide-commit pass; the scope holds no lock (the commit is the compare-and-set)."""

    __slots__ = ()

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        names, wire = self._core.read_request(keys)
        if not names:
            return {}
        with self._core.failing_closed("read"):
            replies = self._redis.mget(wire)
        return self._core.read_reply(names, replies, self._seen)

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        keys, args = self._core.commit_request(self._seen, writes, now)
        with self._core.failing_closed("commit"):
            try:
                reply = self._redis.evalsha(_COMMIT_SHA, len(keys), *keys, *args)
            except self._core.noscript:
                reply = self._redis.eval(_COMMIT_LUA, len(keys), *keys, *args)
        return self._core.commit_reply(reply, self._seen, writes)


class RedisStore:
    """The flow's records in Redis through redis-py (synchronous). Durable; thread-safe like the client.

    ``url_or_client``: a ``redis://`` URL (the store builds, owns and closes the client) or a
    ``redis.Redis`` client (yours to close). ``prefix`` is put in front of every key.
    """

    durable = True

    def __init__(self, url_or_client: object, *, prefix: str = "mfa_flow:",
                 require_noeviction: bool = False) -> None:
        redis = _import("redis")
        self._core = _Core(redis, prefix, require_noeviction)
        self.client, self._owned = _client(redis, url_or_client, asynchronous=False)
        try:
            self.check()
        except Exception:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._core.prefix!r})"

    def check(self) -> None:
        """Read ``maxmemory-policy``: warn, or refuse with ``require_noeviction``; the constructor calls it."""
        reply: object = None
        refused: BaseException | None = None
        with self._core.failing_closed("start-up check"):
            try:
                reply = self.client.config_get("maxmemory-policy")
            except self._core.response_error as exc:
                refused = exc
        self._core.judge_policy(reply, refused, stacklevel=3)

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        yield _Transaction(self._core, self.client)

    def close(self) -> None:
        """Close the client if the store built it from a URL."""
        if self._owned:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- asynchronous ---------------------------------------------------------------------------------------


class _AsyncTransaction(_TransactionBase):
    """``_Transaction`` with awaited I/O; everything else is the shared core."""

    __slots__ = ()

    async def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        names, wire = self._core.read_request(keys)
        if not names:
            return {}
        with self._core.failing_closed("read"):
            replies = await self._redis.mget(wire)
        return self._core.read_reply(names, replies, self._seen)

    async def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        keys, args = self._core.commit_request(self._seen, writes, now)
        with self._core.failing_closed("commit"):
            try:
                reply = await self._redis.evalsha(_COMMIT_SHA, len(keys), *keys, *args)
            except self._core.noscript:
                reply = await self._redis.eval(_COMMIT_LUA, len(keys), *keys, *args)
        return self._core.commit_reply(reply, self._seen, writes)


class AsyncRedisStore:
    """``RedisStore`` on ``redis.asyncio``, for ``AsyncMfaFlow``.

    The constructor does no I/O: the ``maxmemory-policy`` check runs on the first transaction, or when you
    ``await store.check()`` (do that at start-up so a refusal happens there). Close with ``await aclose()``.
    """

    durable = True
    asynchronous = True  # MfaFlow refuses it; AsyncMfaFlow awaits it

    def __init__(self, url_or_client: object, *, prefix: str = "mfa_flow:",
                 require_noeviction: bool = False) -> None:
        redis = _import("redis")
        self._core = _Core(redis, prefix, require_noeviction)
        self.client, self._owned = _client(_import("redis.asyncio"), url_or_client, asynchronous=True)
        self._checked = False

    def __repr__(self) -> str:
        return f"AsyncRedisStore(prefix={self._core.prefix!r})"

    async def check(self) -> None:
        """Read ``maxmemory-policy``: warn, or refuse with ``require_noeviction``. Runs once."""
        reply: object = None
        refused: BaseException | None = None
        with self._core.failing_closed("start-up check"):
            try:
                reply = await self.client.config_get("maxmemory-policy")
            except self._core.response_error as exc:
                refused = exc
        self._core.judge_policy(reply, refused, stacklevel=3)
        self._checked = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_AsyncTransaction]:
        if not self._checked:
            await self.check()
        yield _AsyncTransaction(self._core, self.client)

    async def aclose(self) -> None:
        """Close the client if the store built it from a URL."""
        if self._owned:
            await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

