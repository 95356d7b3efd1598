"""Rate limits for login and token endpoints: a sliding window per key, in Redis or in memory."""

from __future__ import annotations

import abc
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import redis.asyncio as redis

from digi_core.errors import RateLimited

REDIS_KEY_PREFIX = "digi:ratelimit:"

# A sweep every so many hits bounds the in-memory table to the keys still inside their window
# plus this many, without a background task.
SWEEP_EVERY_HITS = 1000

# Only allowed attempts are recorded, so the sorted set never outgrows the limit and a client
# that keeps hammering is let in again once its oldest allowed attempt leaves the window. Redis's
# own clock keeps processes with skewed clocks in agreement.
_SLIDING_WINDOW = """
local key = KEYS[1]
local window_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window_ms)
if redis.call('ZCARD', key) >= limit then
    local oldest_ms = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
    return oldest_ms + window_ms - now_ms
end
redis.call('ZADD', key, now_ms, ARGV[3])
redis.call('PEXPIRE', key, window_ms)
return 0
"""


class RateLimiter(abc.ABC):
    """Counts attempts per key (say ``login:ip:203.0.113.9``) over a sliding window."""

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> None:
        """Count one attempt, or raise ``RateLimited`` if ``limit`` already fell in the window.

        A refused attempt is not counted, and ``retry_after_seconds`` is when the next would be
        allowed (at least 1).
        """
        if limit < 1 or window_seconds < 1:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds >= 1")
        wait_seconds = await self._record_attempt(key, limit, window_seconds)
        if wait_seconds > 0:
            retry_after = max(1, math.ceil(wait_seconds))
            unit = "second" if retry_after == 1 else "seconds"
            raise RateLimited(
                f"Too many attempts; try again in {retry_after} {unit}.",
                retry_after_seconds=retry_after,
            )

    @abc.abstractmethod
    async def _record_attempt(self, key: str, limit: int, window_seconds: int) -> float:
        """Atomically record an attempt if fewer than ``limit`` fell in the last window.

        Returns 0 when it was recorded, otherwise the seconds until one would be, recording
        nothing.
        """

    @abc.abstractmethod
    async def reset(self, key: str) -> None:
        """Forget every attempt counted for ``key``, say after a successful login; idempotent."""


class RedisRateLimiter(RateLimiter):
    """Shares counts between every process on the same Redis; the client stays the caller's."""

    def __init__(self, redis_client: redis.Redis, prefix: str = REDIS_KEY_PREFIX) -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._sliding_window = redis_client.register_script(_SLIDING_WINDOW)

    async def _record_attempt(self, key: str, limit: int, window_seconds: int) -> float:
        # The random member keeps two attempts in the same millisecond apart in the sorted set.
        wait_ms = await self._sliding_window(
            keys=[self._prefix + key], args=[window_seconds * 1000, limit, uuid.uuid4().hex]
        )
        return int(wait_ms) / 1000

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


@dataclass
class _Attempts:
    times: deque[float] = field(default_factory=deque)
    expires_at: float = 0.0


class MemoryRateLimiter(RateLimiter):
    """Counts in this process only: for the embedded default without Redis."""

    def __init__(self) -> None:
        self._attempts: dict[str, _Attempts] = {}
        self._hits_since_sweep = 0

    async def _record_attempt(self, key: str, limit: int, window_seconds: int) -> float:
        now = time.monotonic()
        self._sweep_now_and_then(now)
        attempts = self._attempts.setdefault(key, _Attempts())
        while attempts.times and attempts.times[0] <= now - window_seconds:
            attempts.times.popleft()
        if len(attempts.times) >= limit:
            return attempts.times[0] + window_seconds - now
        attempts.times.append(now)
        attempts.expires_at = now + window_seconds
        return 0.0

    async def reset(self, key: str) -> None:
        self._attempts.pop(key, None)

    def _sweep_now_and_then(self, now: float) -> None:
        self._hits_since_sweep += 1
        if self._hits_since_sweep < SWEEP_EVERY_HITS:
            return
        self._hits_since_sweep = 0
        self._attempts = {
            key: attempts for key, attempts in self._attempts.items() if attempts.expires_at > now
        }


def make_rate_limiter(
    redis_client: redis.Redis | None, prefix: str = REDIS_KEY_PREFIX
) -> RateLimiter:
    """Counts shared across processes when Redis is configured, per process otherwise."""
    if redis_client is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis_client, prefix)
