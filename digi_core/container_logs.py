"""Live container logs: one shared Docker follow stream per container, fanned out to viewers.

Every viewer of a container's logs (a ``containerLogs`` subscription) joins the one follow
stream this process keeps for that container, and the last viewer out closes it. Other PaaS
opened a ``docker logs -f`` per viewer and left them running when the browser went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiodocker
import aiohttp

from digi_core.errors import BadUserInput, DigiError, NotFound
from digi_core.providers import Host

log = logging.getLogger(__name__)

QUEUE_LINES = 1000
"""Live lines a viewer may fall behind by before its oldest unread lines are dropped."""
CATCH_UP_LINES = 1000
"""Lines the follow stream may replay from its anchor: what a container prints in the
moment between reading the anchor and opening the stream (see :meth:`_Follow._run`)."""
MAX_LINE_BYTES = 256 * 1024
"""A longer line is cut: output that never prints a newline must not grow memory forever."""
FRAME_HEADER_BYTES = 8
STDERR_FRAME = 2
NANOSECONDS = 1_000_000_000

# What Docker accepts as a container id or name; anything else never reaches the API path.
_CONTAINER_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Docker's RFC3339Nano prefix, e.g. 2024-05-01T12:34:56.123456789Z.
_TIMESTAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class LogLine:
    """One line a container printed; ``at`` is when Docker received it (``None``: a notice
    from Digi itself, such as lines dropped for a viewer that fell behind)."""

    stream: str  # "stdout" | "stderr"
    text: str  # without the trailing newline
    at: datetime | None


@dataclass(frozen=True)
class _Stamped:
    """A line and its timestamp in whole nanoseconds, which ``datetime`` cannot hold."""

    line: LogLine
    nanos: int | None


@dataclass(frozen=True)
class _Cutoff:
    """The newest line a viewer already has: live lines up to it are duplicates."""

    nanos: int
    lines_at_nanos: frozenset[tuple[str, str]]

    def covers(self, entry: _Stamped) -> bool:
        if entry.nanos is None:
            return False
        if entry.nanos == self.nanos:
            # Two lines can share a nanosecond (stdout and stderr are stamped apart).
            return (entry.line.stream, entry.line.text) in self.lines_at_nanos
        return entry.nanos < self.nanos

    def since(self) -> str:
        """The cutoff as Docker's ``since`` parameter: seconds with nanoseconds."""
        return f"{self.nanos // NANOSECONDS}.{self.nanos % NANOSECONDS:09d}"


def _cutoff(entries: Sequence[_Stamped]) -> _Cutoff | None:
    stamps = [entry.nanos for entry in entries if entry.nanos is not None]
    if not stamps:
        return None
    newest = max(stamps)
    return _Cutoff(
        newest,
        frozenset((e.line.stream, e.line.text) for e in entries if e.nanos == newest),
    )


def _split_timestamp(message: bytes) -> tuple[datetime | None, int | None, bytes]:
    """Docker prefixes each message with its timestamp and a space (``timestamps=1``)."""
    head, space, rest = message.partition(b" ")
    match = _TIMESTAMP.fullmatch(head)
    if not space or match is None:
        return None, None, message
    whole, fraction, zone = match.groups()
    base = datetime.fromisoformat((whole + zone).decode())
    nanos = int((fraction or b"0").ljust(9, b"0"))
    at = base + timedelta(microseconds=nanos // 1000)
    return at, int(base.timestamp()) * NANOSECONDS + nanos, rest


@dataclass
class _PartialLine:
    text: bytearray = field(default_factory=bytearray)
    at: datetime | None = None
    nanos: int | None = None


class _LogParser:
    """Docker's log body, fed chunk by chunk as it arrives, turned into stamped lines.

    Without a TTY the body is multiplexed: frames of an 8-byte header (stream type 1 stdout,
    2 stderr; 3 zero bytes; big-endian length) and one log message each. Docker cuts lines
    over 16 KiB into several messages, each with its own timestamp, so a line can span
    frames: it is kept per stream until its newline and stamped with its first part's time.
    With a TTY the body is the raw terminal output: everything is stdout.
    """

    def __init__(self, tty: bool) -> None:
        self._tty = tty
        self._buffer = bytearray()
        self._partial = {"stdout": _PartialLine(), "stderr": _PartialLine()}

    def feed(self, chunk: bytes) -> list[_Stamped]:
        self._buffer += chunk
        lines: list[_Stamped] = []
        for stream, message in self._messages():
            lines += self._assemble(stream, message)
        return lines

    def finish(self) -> list[_Stamped]:
        """The unterminated last line of each stream, when the body ends."""
        lines = self._assemble("stdout", bytes(self._buffer)) if self._tty else []
        self._buffer.clear()
        for stream, partial in self._partial.items():
            if partial.text:
                lines.append(self._line(stream, bytes(partial.text), partial))
                partial.text.clear()
        return lines

    def _messages(self) -> list[tuple[str, bytes]]:
        messages = []
        buffer = self._buffer
        if self._tty:
            # Message boundaries are lost on a TTY, but each message is one line.
            while (end := buffer.find(b"\n")) >= 0 or len(buffer) > MAX_LINE_BYTES:
                end = end + 1 if end >= 0 else MAX_LINE_BYTES
                messages.append(("stdout", bytes(buffer[:end])))
                del buffer[:end]
            return messages
        while len(buffer) >= FRAME_HEADER_BYTES:
            end = FRAME_HEADER_BYTES + int.from_bytes(buffer[4:FRAME_HEADER_BYTES], "big")
            if len(buffer) < end:
                break
            stream = "stderr" if buffer[0] == STDERR_FRAME else "stdout"
            messages.append((stream, bytes(buffer[FRAME_HEADER_BYTES:end])))
            del buffer[:end]
        return messages

    def _assemble(self, stream: str, message: bytes) -> list[_Stamped]:
        at, nanos, text = _split_timestamp(message)
        partial = self._partial[stream]
        if not partial.text:
            partial.at, partial.nanos = at, nanos
        partial.text += text
        lines = []
        while (end := partial.text.find(b"\n")) >= 0 or len(partial.text) > MAX_LINE_BYTES:
            cut = end if end >= 0 else MAX_LINE_BYTES
            lines.append(self._line(stream, bytes(partial.text[:cut]), partial))
            del partial.text[: cut + 1 if end >= 0 else cut]
            partial.at, partial.nanos = at, nanos
        return lines

    @staticmethod
    def _line(stream: str, text: bytes, stamp: _PartialLine) -> _Stamped:
        decoded = text.rstrip(b"\r").decode("utf-8", errors="replace")
        return _Stamped(LogLine(stream, decoded, stamp.at), stamp.nanos)


def _logs_path(container_id: str) -> str:
    return f"containers/{container_id}/logs"


def _not_found(host: Host, container_id: str) -> NotFound:
    return NotFound(
        f"container {container_id!r} does not exist on host {host.id}: "
        "it may have been replaced by a newer deployment; list the service's containers again"
    )


async def _read_log(host: Host, container_id: str, tty: bool, tail: int) -> list[_Stamped]:
    """The last ``tail`` lines the container printed, without following."""
    params = {"follow": "0", "stdout": "1", "stderr": "1", "timestamps": "1", "tail": str(tail)}
    async with host.docker._query(_logs_path(container_id), params=params) as response:
        try:
            body = await response.read()
        finally:
            response.close()  # aiodocker's _query leaves the response to its caller
    parser = _LogParser(tty)
    return parser.feed(body) + parser.finish()


class _Subscriber:
    """One viewer's bounded queue: a slow viewer loses its oldest lines, never blocks."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[_Stamped | None] = asyncio.Queue(capacity)
        self.dropped = 0

    def put(self, entry: _Stamped | None) -> None:
        """Queue ``entry``; ``None`` ends the viewer's lines."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(entry)


class _Lines:
    """What a viewer iterates: its tail, then the live lines it has not seen yet."""

    def __init__(
        self, subscriber: _Subscriber, history: list[_Stamped], cutoff: _Cutoff | None
    ) -> None:
        self._subscriber = subscriber
        self._history = deque(entry.line for entry in history)
        self._cutoff = cutoff
        self._ended = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> LogLine:
        while True:
            if self._history:
                return self._history.popleft()
            if self._ended:
                raise StopAsyncIteration
            if self._subscriber.dropped:
                # The queue drops from its head, so the gap is just before its next line.
                count, self._subscriber.dropped = self._subscriber.dropped, 0
                return LogLine(
                    "stderr",
                    f"[digi] {count} log lines were dropped here: this viewer fell behind",
                    None,
                )
            entry = await self._subscriber.queue.get()
            if entry is None:
                self._ended = True
            elif self._cutoff is None or not self._cutoff.covers(entry):
                return entry.line


class _Follow:
    """One container's Docker follow stream, read by one task and copied to each viewer."""

    def __init__(
        self,
        host: Host,
        container_id: str,
        on_end: Callable[[_Follow], None],
    ) -> None:
        self.host = host
        self.container_id = container_id
        self.subscribers: set[_Subscriber] = set()
        self.started = asyncio.Event()
        self.failure: Exception | None = None
        self.tty = False
        self.anchor: _Cutoff | None = None
        self._on_end = on_end
        self.task = asyncio.create_task(self._run(), name=f"logs -f {container_id[:12]}")

    async def _run(self) -> None:
        try:
            details = await self.host.docker._query_json(f"containers/{self.container_id}/json")
            self.tty = bool(details["Config"]["Tty"])
            # The stream starts at an anchor, the newest line now, replaying the few lines
            # printed since; a viewer reads its own tail only after this, so its tail ends
            # at or after the anchor and nothing falls between tail and stream. Opening the
            # stream with tail=0 instead would lose what is printed while dockerd sets up.
            self.anchor = _cutoff(await _read_log(self.host, self.container_id, self.tty, 1))
            params = {"follow": "1", "stdout": "1", "stderr": "1", "timestamps": "1"}
            if self.anchor is None:  # nothing printed yet: all of it is the few new lines
                params["tail"] = "all"
            else:
                params |= {"since": self.anchor.since(), "tail": str(CATCH_UP_LINES)}
            async with self.host.docker._query(
                _logs_path(self.container_id),
                params=params,
                # A follow stream lasts as long as the container: no total or read timeout.
                timeout=aiohttp.ClientTimeout(),
            ) as response:
                try:
                    self.started.set()
                    parser = _LogParser(self.tty)
                    async for chunk in response.content.iter_any():
                        self._publish(parser.feed(chunk))
                    self._publish(parser.finish())
                finally:
                    response.close()  # closes the connection: dockerd drops its follower
        except asyncio.CancelledError:
            if not self.started.is_set():
                self.failure = DigiError("the log stream was closed as it opened: try again")
            raise
        except Exception as error:
            if self.started.is_set():
                log.warning(
                    "the log stream of container %s on host %s broke: %r",
                    self.container_id,
                    self.host.id,
                    error,
                )
            else:
                self.failure = error
        finally:
            self.started.set()
            self._on_end(self)
            for subscriber in self.subscribers:
                subscriber.put(None)

    async def join(self, subscriber: _Subscriber, tail: int) -> _Lines:
        """The lines for a subscriber already in :attr:`subscribers`: its tail, then live.

        How the tail meets the live lines: the subscriber joined before its tail is read,
        and its tail is read (its own non-follow request) only once the stream has started
        from its anchor. So the tail ends at or after the anchor, every later line reaches
        the queue, and the overlap is only lines both hold: live lines stamped up to the
        tail's newest line are dropped. Timestamps have nanoseconds; lines sharing the
        newest stamp are told apart by stream and text. Docker stamps stdout and stderr in
        separate goroutines, so two lines printed within microseconds on different streams
        may be stored against their stamps' order: at the tail's edge such a line could be
        dropped. Matching positions instead fails whenever the tail's last line reached the
        stream before the subscriber joined, so the stamp is the better rule.
        """
        try:
            await self.started.wait()
            if self.failure is not None:
                raise self.failure
            history = await _read_log(self.host, self.container_id, self.tty, tail) if tail else []
        except aiodocker.DockerError as error:
            if error.status == 404:
                raise _not_found(self.host, self.container_id) from None
            raise
        # A viewer without a tail has seen nothing: the stream's replay up to the anchor
        # is history to it.
        return _Lines(subscriber, history, _cutoff(history) or self.anchor)

    def _publish(self, entries: list[_Stamped]) -> None:
        for entry in entries:
            for subscriber in self.subscribers:
                subscriber.put(entry)

    async def stop(self) -> None:
        """Cancel the stream and wait until its connection is closed."""
        self.task.cancel()
        # wait() neither raises the task's CancelledError nor swallows one aimed at us.
        await asyncio.wait([self.task])


class LogFollowers:
    """The process's follow streams, one per (host, container), shared by its viewers."""

    def __init__(self, queue_lines: int = QUEUE_LINES) -> None:
        self._queue_lines = queue_lines
        self._follows: dict[tuple[str, str], _Follow] = {}

    def active_streams(self) -> int:
        """How many Docker follow streams are open."""
        return len(self._follows)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, host: Host, container_id: str, tail: int
    ) -> AsyncIterator[AsyncIterator[LogLine]]:
        """Yield the container's last ``tail`` lines (0: none), then its live lines.

        The iterator ends when the container stops. Raises :class:`NotFound` for an
        unknown container, :class:`BadUserInput` for a negative ``tail``. Leaving the
        context, by cancellation too, leaves the stream; the last viewer out closes it.
        """
        if tail < 0:
            raise BadUserInput("tail must be 0 or more lines", field="tail")
        if not _CONTAINER_REFERENCE.fullmatch(container_id):
            raise _not_found(host, container_id)
        key = (host.id, container_id)
        follow = self._follows.get(key)
        if follow is None:
            follow = self._follows[key] = _Follow(host, container_id, self._forget)
        subscriber = _Subscriber(self._queue_lines)
        # Joined before the tail is read, so every line after the tail is queued.
        follow.subscribers.add(subscriber)
        try:
            yield await follow.join(subscriber, tail)
        finally:
            follow.subscribers.discard(subscriber)
            subscriber.put(None)  # an iterator used after the context ends, ends
            if not follow.subscribers:
                self._forget(follow)
                await follow.stop()

    def _forget(self, follow: _Follow) -> None:
        key = (follow.host.id, follow.container_id)
        if self._follows.get(key) is follow:
            del self._follows[key]

    async def close(self) -> None:
        """Close every stream; the viewers' iterators end."""
        follows = list(self._follows.values())
        self._follows.clear()
        for follow in follows:
            await follow.stop()
