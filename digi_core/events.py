"""The event bus: deployment status and log events fanned out to subscribers, via Redis or not."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

Event = dict[str, Any]

REDIS_CHANNEL_PREFIX = "digi:"
SUBSCRIBER_QUEUE_SIZE = 1000


class EventBus(abc.ABC):
    """Publishes JSON-serialisable events on named channels to everyone subscribed to them.

    Delivery is at most once and in publishing order per publisher: a subscriber that joins late
    or falls behind misses events, so it should read the current state after subscribing.
    """

    @abc.abstractmethod
    async def publish(self, channel: str, event: Event) -> None:
        """Send ``event`` to every current subscriber of ``channel``; never waits for them.

        Raises ``TypeError`` if the event is not JSON-serialisable, ``RuntimeError`` once closed.
        """

    @abc.abstractmethod
    def subscribe(
        self, channel: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Event]]:
        """A context that is subscribed to ``channel`` from the moment it has been entered.

        Iterate the value it gives to receive events. Leaving the context, however it is left,
        unsubscribes. After ``close()`` the iteration ends and subscribing raises ``RuntimeError``.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Ends every active subscription's iteration and refuses further use; idempotent."""


class _QueuedEvents:
    """The events of one in-process subscription; ``None`` in the queue means the bus closed."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        self.warned_about_drops = False
        self.finished = False

    def put(self, event: Event | None) -> None:
        # Dropping the oldest event keeps the publisher, usually a deployment, from waiting on
        # a browser tab that stopped reading.
        if self.queue.full():
            self.queue.get_nowait()
            if not self.warned_about_drops:
                self.warned_about_drops = True
                log.warning(
                    "a subscriber of %s is too slow; dropping its oldest events", self.channel
                )
        self.queue.put_nowait(event)

    def __aiter__(self) -> _QueuedEvents:
        return self

    async def __anext__(self) -> Event:
        if not self.finished:
            event = await self.queue.get()
            if event is not None:
                return event
            self.finished = True
        raise StopAsyncIteration


class MemoryBus(EventBus):
    """Reaches subscribers in this process only: for the embedded default without Redis."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[_QueuedEvents]] = {}
        self._closed = False

    async def publish(self, channel: str, event: Event) -> None:
        self._check_open()
        # A JSON round trip gives each subscriber its own copy and fails here, as Redis would,
        # on an event that does not serialise.
        payload = json.dumps(event)
        for subscription in self._subscriptions.get(channel, ()):
            subscription.put(json.loads(payload))

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Event]]:
        self._check_open()
        subscription = _QueuedEvents(channel)
        self._subscriptions.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscriptions = self._subscriptions.get(channel, set())
            subscriptions.discard(subscription)
            if not subscriptions:
                self._subscriptions.pop(channel, None)

    async def close(self) -> None:
        self._closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.put(None)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the event bus is closed")


class _RedisEvents:
    """The events of one Redis subscription; an UNSUBSCRIBE confirmation ends them."""

    def __init__(self, pubsub: PubSub, channel: str) -> None:
        self.pubsub = pubsub
        self.channel = channel
        self.finished = False

    def __aiter__(self) -> _RedisEvents:
        return self

    async def __anext__(self) -> Event:
        while not self.finished:
            message = await self.pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "unsubscribe":
                self.finished = True
            elif message["type"] == "message":
                try:
                    event: Event = json.loads(message["data"])
                except ValueError:
                    log.warning("ignoring a message on %s that is not JSON", self.channel)
                    continue
                return event
        raise StopAsyncIteration


class RedisBus(EventBus):
    """Reaches subscribers in every process that uses the same Redis.

    The client is the caller's: ``close()`` only ends the subscriptions this bus opened. Each
    subscription holds one Redis connection of its own while it is active.
    """

    def __init__(self, redis_client: redis.Redis, prefix: str = REDIS_CHANNEL_PREFIX) -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._active: set[PubSub] = set()
        self._closed = False

    async def publish(self, channel: str, event: Event) -> None:
        self._check_open()
        await self._redis.publish(self._prefix + channel, json.dumps(event))

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Event]]:
        self._check_open()
        redis_channel = self._prefix + channel
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(redis_channel)
            # SUBSCRIBE is only written to the socket; waiting for its confirmation makes sure
            # Redis has registered us before we promise not to miss anything published from now.
            while not _is_confirmation(await pubsub.get_message(timeout=None)):
                pass
            self._check_open()  # close() may have run while we waited, and missed this one
            self._active.add(pubsub)
            yield _RedisEvents(pubsub, redis_channel)
        finally:
            self._active.discard(pubsub)
            # Shielded so that a second cancellation cannot leave the connection subscribed.
            await asyncio.shield(_release(pubsub))

    async def close(self) -> None:
        self._closed = True
        # UNSUBSCRIBE only writes, so it is safe beside a reader blocked on the same connection;
        # its confirmation is what ends that reader's iteration.
        for pubsub in list(self._active):
            # One may have been released while we awaited another; touching it would reconnect.
            if pubsub in self._active:
                with contextlib.suppress(redis.RedisError):
                    await pubsub.unsubscribe()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the event bus is closed")


def _is_confirmation(message: dict[str, Any] | None) -> bool:
    return message is not None and message["type"] == "subscribe"


async def _release(pubsub: PubSub) -> None:
    # aclose() drops the connection, and Redis forgets a dropped connection's subscriptions at
    # once; an UNSUBSCRIBE first could be mixed up with a reply a cancelled read left half-read.
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    except redis.RedisError:
        log.warning("could not close a Redis subscription cleanly", exc_info=True)


def make_event_bus(
    redis_client: redis.Redis | None, prefix: str = REDIS_CHANNEL_PREFIX
) -> EventBus:
    """A bus across processes when Redis is configured, in-process otherwise."""
    if redis_client is None:
        return MemoryBus()
    return RedisBus(redis_client, prefix)
