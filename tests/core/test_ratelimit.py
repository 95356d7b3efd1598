"""Rate limits, in memory and in the real Redis: refusals, Retry-After, windows and sharing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from digi_core.errors import RateLimited
from digi_core.ratelimit import (
    SWEEP_EVERY_HITS,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield make_rate_limiter(None)
        return
    client = redis.Redis.from_url(REDIS_URL)
    yield make_rate_limiter(client)
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_the_attempt_past_the_limit_is_refused(limiter: RateLimiter, key: str) -> None:
    for _ in range(3):
        await limiter.hit(key, limit=3, window_seconds=60)
    with pytest.raises(RateLimited, match="try again in 60 seconds") as refused:
        await limiter.hit(key, limit=3, window_seconds=60)
    assert refused.value.retry_after_seconds == 60
    assert refused.value.extensions == {"code": "RATE_LIMITED", "retryAfter": "60"}
    # Refused attempts keep being refused, without pushing the moment of release further away.
    with pytest.raises(RateLimited) as again:
        await limiter.hit(key, limit=3, window_seconds=60)
    assert 59 <= again.value.retry_after_seconds <= 60


async def test_keys_are_independent(limiter: RateLimiter, key: str) -> None:
    await limiter.hit(key + ":ip", limit=1, window_seconds=60)
    await limiter.hit(key + ":account", limit=1, window_seconds=60)
    with pytest.raises(RateLimited):
        await limiter.hit(key + ":ip", limit=1, window_seconds=60)
    with pytest.raises(RateLimited):
        await limiter.hit(key + ":account", limit=1, window_seconds=60)


async def test_attempts_are_allowed_again_once_the_window_passed(
    limiter: RateLimiter, key: str
) -> None:
    for _ in range(2):
        await limiter.hit(key, limit=2, window_seconds=1)
    with pytest.raises(RateLimited, match="try again in 1 second\\.") as refused:
        await limiter.hit(key, limit=2, window_seconds=1)
    assert refused.value.retry_after_seconds == 1
    await asyncio.sleep(1.1)
    for _ in range(2):
        await limiter.hit(key, limit=2, window_seconds=1)


async def test_reset_forgets_the_attempts(limiter: RateLimiter, key: str) -> None:
    await limiter.hit(key, limit=1, window_seconds=60)
    await limiter.reset(key)
    await limiter.hit(key, limit=1, window_seconds=60)
    with pytest.raises(RateLimited):
        await limiter.hit(key, limit=1, window_seconds=60)
    await limiter.reset(key + ":never-hit")


async def test_a_limit_below_one_is_a_mistake(limiter: RateLimiter, key: str) -> None:
    with pytest.raises(ValueError):
        await limiter.hit(key, limit=0, window_seconds=60)
    with pytest.raises(ValueError):
        await limiter.hit(key, limit=5, window_seconds=0)


async def test_two_processes_share_the_count(key: str) -> None:
    # Two clients, as two API processes would have.
    client_a = redis.Redis.from_url(REDIS_URL)
    client_b = redis.Redis.from_url(REDIS_URL)
    try:
        limiter_a, limiter_b = RedisRateLimiter(client_a), RedisRateLimiter(client_b)
        await limiter_a.hit(key, limit=2, window_seconds=60)
        await limiter_b.hit(key, limit=2, window_seconds=60)
        with pytest.raises(RateLimited):
            await limiter_a.hit(key, limit=2, window_seconds=60)
        await limiter_b.reset(key)
        await limiter_a.hit(key, limit=2, window_seconds=60)
    finally:
        await client_a.aclose()
        await client_b.aclose()


async def test_redis_keys_are_prefixed_and_expire(key: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await RedisRateLimiter(client).hit(key, limit=5, window_seconds=60)
        assert 0 < await client.pttl(f"digi:ratelimit:{key}") <= 60_000
    finally:
        await client.aclose()


async def test_concurrent_attempts_never_exceed_the_limit(limiter: RateLimiter, key: str) -> None:
    async def attempt() -> bool:
        try:
            await limiter.hit(key, limit=5, window_seconds=60)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert results.count(True) == 5


async def test_memory_limiter_forgets_keys_whose_window_passed() -> None:
    limiter = MemoryRateLimiter()
    for number in range(SWEEP_EVERY_HITS):
        await limiter.hit(f"old:{number}", limit=1, window_seconds=1)
    await asyncio.sleep(1.1)
    for number in range(SWEEP_EVERY_HITS):
        await limiter.hit(f"new:{number}", limit=1, window_seconds=1)
    assert len(limiter._attempts) <= SWEEP_EVERY_HITS + 1
