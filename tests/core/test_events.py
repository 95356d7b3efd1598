"""The event bus, in-process and over the real Redis: delivery, fan-out and clean unsubscribing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from digi_core.events import (
    SUBSCRIBER_QUEUE_SIZE,
    Event,
    EventBus,
    MemoryBus,
    RedisBus,
    make_event_bus,
)
from tests.conftest import REDIS_URL


@pytest.fixture
async def observer() -> AsyncIterator[redis.Redis]:
    """A client of its own, to look at Redis from outside the bus."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        memory_bus = make_event_bus(None)
        yield memory_bus
        await memory_bus.close()
        return
    client = redis.Redis.from_url(REDIS_URL)
    redis_bus = make_event_bus(client)
    yield redis_bus
    await redis_bus.close()
    await client.aclose()


@pytest.fixture
def channel() -> str:
    return f"test:{uuid.uuid4().hex}"


async def _next(events: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(anext(events), 5)


async def _subscriber_count(bus: EventBus, observer: redis.Redis, channel: str) -> int:
    if isinstance(bus, MemoryBus):
        return len(bus._subscriptions.get(channel, ()))
    [(_, count)] = await observer.pubsub_numsub(f"digi:{channel}")
    return int(count)


async def _wait_for_subscribers(
    bus: EventBus, observer: redis.Redis, channel: str, expected: int
) -> None:
    # Redis drops a closed connection's subscriptions asynchronously, so poll briefly.
    for _ in range(250):
        if await _subscriber_count(bus, observer, channel) == expected:
            return
        await asyncio.sleep(0.02)
    assert await _subscriber_count(bus, observer, channel) == expected


async def test_two_subscribers_get_every_event_in_order(bus: EventBus, channel: str) -> None:
    async with bus.subscribe(channel) as first, bus.subscribe(channel) as second:
        for number in range(5):
            await bus.publish(channel, {"number": number})
        assert [(await _next(first))["number"] for _ in range(5)] == [0, 1, 2, 3, 4]
        assert [(await _next(second))["number"] for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_an_event_from_before_subscribing_is_not_delivered(
    bus: EventBus, channel: str
) -> None:
    await bus.publish(channel, {"status": "early"})
    async with bus.subscribe(channel) as events:
        await bus.publish(channel, {"status": "late"})
        assert await _next(events) == {"status": "late"}


async def test_other_channels_are_not_delivered(bus: EventBus, channel: str) -> None:
    async with bus.subscribe(channel) as events:
        await bus.publish(channel + ":other", {"status": "elsewhere"})
        await bus.publish(channel, {"status": "here"})
        assert await _next(events) == {"status": "here"}


async def test_an_event_that_is_not_json_is_refused(bus: EventBus, channel: str) -> None:
    with pytest.raises(TypeError):
        await bus.publish(channel, {"when": object()})


async def test_leaving_by_break_unsubscribes(
    bus: EventBus, observer: redis.Redis, channel: str
) -> None:
    async with bus.subscribe(channel) as events:
        assert await _subscriber_count(bus, observer, channel) == 1
        await bus.publish(channel, {"status": "done"})
        async for _ in events:
            break
    await _wait_for_subscribers(bus, observer, channel, 0)


async def test_leaving_by_exception_unsubscribes(
    bus: EventBus, observer: redis.Redis, channel: str
) -> None:
    with pytest.raises(LookupError):
        async with bus.subscribe(channel) as events:
            await bus.publish(channel, {"status": "failed"})
            async for _ in events:
                raise LookupError
    await _wait_for_subscribers(bus, observer, channel, 0)


async def test_cancelling_a_reading_task_unsubscribes(
    bus: EventBus, observer: redis.Redis, channel: str
) -> None:
    received: list[Event] = []

    async def follow() -> None:
        async with bus.subscribe(channel) as events:
            async for event in events:
                received.append(event)

    task = asyncio.create_task(follow())
    await _wait_for_subscribers(bus, observer, channel, 1)
    await bus.publish(channel, {"line": "building"})
    for _ in range(250):
        if received:
            break
        await asyncio.sleep(0.02)
    assert received == [{"line": "building"}]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for_subscribers(bus, observer, channel, 0)


async def test_close_ends_the_iteration_of_every_subscriber(
    bus: EventBus, observer: redis.Redis, channel: str
) -> None:
    async def follow() -> list[Event]:
        async with bus.subscribe(channel) as events:
            return [event async for event in events]

    followers = [asyncio.create_task(follow()) for _ in range(2)]
    await _wait_for_subscribers(bus, observer, channel, 2)
    await bus.publish(channel, {"status": "stopping"})
    await bus.close()
    # Events published before close are still delivered; the iteration then ends.
    results = await asyncio.wait_for(asyncio.gather(*followers), 5)
    assert results == [[{"status": "stopping"}]] * 2
    await _wait_for_subscribers(bus, observer, channel, 0)
    with pytest.raises(RuntimeError):
        async with bus.subscribe(channel):
            pass
    with pytest.raises(RuntimeError):
        await bus.publish(channel, {"status": "late"})


async def test_two_processes_buses_fan_out_to_each_other(channel: str) -> None:
    # Two clients, as two API processes would have.
    client_a = redis.Redis.from_url(REDIS_URL)
    client_b = redis.Redis.from_url(REDIS_URL)
    bus_a, bus_b = RedisBus(client_a), RedisBus(client_b)
    try:
        async with bus_a.subscribe(channel) as events_a, bus_b.subscribe(channel) as events_b:
            await bus_a.publish(channel, {"from": "a"})
            await bus_b.publish(channel, {"from": "b"})
            assert [await _next(events_a), await _next(events_a)] == [{"from": "a"}, {"from": "b"}]
            assert [await _next(events_b), await _next(events_b)] == [{"from": "a"}, {"from": "b"}]
    finally:
        await bus_a.close()
        await bus_b.close()
        await client_a.aclose()
        await client_b.aclose()


async def test_redis_bus_leaves_the_client_open(channel: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    bus = RedisBus(client)
    async with bus.subscribe(channel):
        pass
    await bus.close()
    assert await client.echo("still open") == b"still open"
    await client.aclose()


async def test_a_slow_subscriber_loses_its_oldest_events_without_blocking_the_publisher(
    channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MemoryBus()
    extra = 10
    with caplog.at_level(logging.WARNING, logger="digi_core.events"):
        async with bus.subscribe(channel) as slow, bus.subscribe(channel) as fast:
            for number in range(SUBSCRIBER_QUEUE_SIZE + extra):
                await asyncio.wait_for(bus.publish(channel, {"number": number}), 1)
                if number < extra:
                    assert await _next(fast) == {"number": number}
            assert await _next(slow) == {"number": extra}
            assert await _next(fast) == {"number": extra}
    warnings = [record for record in caplog.records if "too slow" in record.getMessage()]
    assert len(warnings) == 1
    await bus.close()


async def test_make_event_bus_picks_redis_when_configured() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    assert isinstance(make_event_bus(client), RedisBus)
    assert isinstance(make_event_bus(None), MemoryBus)
    await client.aclose()
