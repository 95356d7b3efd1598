"""Live container logs shared between viewers, against the real Docker engine."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digi_core import runtime
from digi_core.container_logs import LogFollowers, LogLine
from digi_core.errors import NotFound
from digi_core.providers import Host
from tests.conftest import BASE_IMAGE
from tests.core.conftest import new_slug

CHATTY = """i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done"""
# About 200 lines a second, ten at a time.
BURSTS = """i=0; while true; do for j in 0 1 2 3 4 5 6 7 8 9; do echo out $i; i=$((i+1)); done
sleep 0.05; done"""
# Waits for /tmp/go (made by `docker exec`), so its output is printed after we subscribed.
LONG_LINES = """while [ ! -e /tmp/go ]; do sleep 0.05; done
s=x; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do s=$s$s; done
echo $s; echo after; echo $s >&2; sleep 60"""
LONG = "x" * 2**15  # twice Docker's 16 KiB message size: one line over three frames


@pytest.fixture
async def followers() -> AsyncIterator[LogFollowers]:
    followers = LogFollowers()
    yield followers
    await followers.close()
    assert followers.active_streams() == 0


async def run(host: Host, script: str) -> str:
    spec = runtime.ContainerSpec(
        new_slug(host, "logs"),
        "app",
        1,
        BASE_IMAGE,
        command=["sh", "-c", script],
        stop_timeout_seconds=1,
    )
    return await runtime.run_container(host, spec)


async def printed(host: Host, container_id: str) -> list[str]:
    """What the container printed so far, in Docker's order, read without Digi's code."""
    container = await host.docker.containers.get(container_id)
    return "".join(await container.log(stdout=True, stderr=True)).splitlines()


async def wait_printed(host: Host, container_id: str, count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            if len(await printed(host, container_id)) >= count:
                return
            await asyncio.sleep(0.05)


async def take(lines: AsyncIterator[LogLine], count: int) -> list[LogLine]:
    taken: list[LogLine] = []
    async with asyncio.timeout(10):
        async for line in lines:
            taken.append(line)
            if len(taken) == count:
                break
    return taken


async def watch(
    followers: LogFollowers, host: Host, container_id: str, seen: list[LogLine]
) -> None:
    async with followers.subscribe(host, container_id, 2) as lines:
        async for line in lines:
            seen.append(line)


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:g} s: {what}") from None


def assert_in_docker_order(got: list[LogLine], docker_order: list[str]) -> None:
    """``got`` is a run of what Docker stored: nothing missing, doubled or out of order."""
    texts = [line.text for line in got]
    start = docker_order.index(texts[0])
    assert texts == docker_order[start : start + len(texts)]


def assert_streams_told_apart(got: list[LogLine]) -> None:
    for line in got:
        assert line.stream == ("stdout" if line.text.startswith("out") else "stderr"), line


def number(line: LogLine) -> int:
    return int(line.text.split()[-1])


def unix_socket_inodes() -> set[int]:
    """Every Unix socket open on the machine, dockerd's included."""
    rows = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {int(row.split()[6]) for row in rows}


async def peer_inode(inode: int) -> int:
    """The other end of our Unix socket ``inode``: dockerd's end of the connection."""
    process = await asyncio.create_subprocess_exec(
        "ss", "-x", "-n", "-H", stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    for row in output.decode().splitlines():
        fields = row.split()  # netid state recv-q send-q local inode peer peer-inode
        if fields[5] == str(inode):
            return int(fields[7])
    raise AssertionError(f"no Unix socket {inode} in `ss -x`")


def docker_connections_in_use(host: Host) -> list[object]:
    connector = host.docker.session.connector
    assert connector is not None
    return list(connector._acquired)


async def test_tail_first_then_live_lines_with_stdout_and_stderr_apart(
    host: Host, followers: LogFollowers
) -> None:
    container_id = await run(host, CHATTY)
    await wait_printed(host, container_id, 6)
    async with followers.subscribe(host, container_id, 4) as lines:
        joined = datetime.now(UTC)
        got = await take(lines, 14)
    assert_in_docker_order(got, await printed(host, container_id))
    assert_streams_told_apart(got)
    assert {line.stream for line in got} == {"stdout", "stderr"}
    assert all(line.at is not None and line.at < joined for line in got[:4])  # the tail
    assert got[-1].at is not None and got[-1].at > joined  # live
    assert got[0].at is not None and abs(got[0].at - joined) < timedelta(seconds=30)


async def test_viewers_share_one_docker_stream_and_a_late_joiner_gets_its_tail_once(
    host: Host, followers: LogFollowers
) -> None:
    container_id = await run(host, CHATTY)
    async with followers.subscribe(host, container_id, 0) as first:
        seen_by_first = await take(first, 4)
        await wait_printed(host, container_id, 10)  # more than the late joiner's tail
        async with followers.subscribe(host, container_id, 6) as second:
            joined = datetime.now(UTC)
            seen_by_second = await take(second, 16)
            assert followers.active_streams() == 1
            assert len(docker_connections_in_use(host)) == 1  # one HTTP stream, not two
            seen_by_first += await take(first, 30)
    assert followers.active_streams() == 0
    docker_order = await printed(host, container_id)
    assert_in_docker_order(seen_by_first, docker_order)
    assert_in_docker_order(seen_by_second, docker_order)  # its tail, then live, no doubles
    assert_streams_told_apart(seen_by_first + seen_by_second)
    assert all(line.at is not None and line.at < joined for line in seen_by_second[:6])
    live_for_second = {line.text for line in seen_by_second[6:]}
    assert live_for_second <= {line.text for line in seen_by_first}  # the same live lines


async def test_the_last_viewer_out_closes_the_stream_on_dockers_side(
    host: Host, followers: LogFollowers
) -> None:
    container_id = await run(host, CHATTY)
    first: list[LogLine] = []
    second: list[LogLine] = []
    watchers = [
        asyncio.create_task(watch(followers, host, container_id, seen)) for seen in (first, second)
    ]
    await wait_for(lambda: len(first) > 3 and len(second) > 3, "both viewers get lines")
    assert followers.active_streams() == 1
    [follow_connection] = docker_connections_in_use(host)
    socket = follow_connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
    ours = os.fstat(socket.fileno()).st_ino
    dockerd_end = await peer_inode(ours)
    assert {ours, dockerd_end} <= unix_socket_inodes()

    watchers[0].cancel()  # as a GraphQL subscription is when its client goes away
    await asyncio.wait([watchers[0]], timeout=5)  # a hang here is a leak
    assert watchers[0].done()
    assert followers.active_streams() == 1
    count = len(second)
    await wait_for(lambda: len(second) > count + 2, "the other viewer still gets lines")

    watchers[1].cancel()
    await asyncio.wait([watchers[1]], timeout=5)  # a hang here is a leak
    assert watchers[1].done()
    assert followers.active_streams() == 0
    assert docker_connections_in_use(host) == []
    # dockerd closes its end when its follower's handler returns: a leaked follower keeps it.
    await wait_for(
        lambda: not {ours, dockerd_end} & unix_socket_inodes(),
        "both ends of the follow connection closed",
        seconds=5,
    )


async def test_a_stopped_container_ends_every_viewer(host: Host, followers: LogFollowers) -> None:
    container_id = await run(host, CHATTY)
    first: list[LogLine] = []
    second: list[LogLine] = []
    watchers = [
        asyncio.create_task(watch(followers, host, container_id, seen)) for seen in (first, second)
    ]
    await wait_for(lambda: len(first) > 2 and len(second) > 2, "both viewers get lines")
    await (await host.docker.containers.get(container_id)).stop()
    async with asyncio.timeout(10):
        await asyncio.gather(*watchers)  # the iterators ended by themselves
    assert followers.active_streams() == 0
    assert docker_connections_in_use(host) == []


async def test_closing_the_followers_ends_every_viewer(host: Host, followers: LogFollowers) -> None:
    container_id = await run(host, CHATTY)
    seen: list[LogLine] = []
    watcher = asyncio.create_task(watch(followers, host, container_id, seen))
    await wait_for(lambda: len(seen) > 2, "the viewer gets lines")
    await followers.close()  # as the server does at shutdown
    async with asyncio.timeout(5):
        await watcher
    assert followers.active_streams() == 0
    assert docker_connections_in_use(host) == []


async def test_a_slow_viewer_loses_its_oldest_lines_and_is_told(host: Host) -> None:
    container_id = await run(host, BURSTS)
    followers = LogFollowers(queue_lines=100)  # half a second of lines
    try:
        async with (
            followers.subscribe(host, container_id, 0) as slow,
            followers.subscribe(host, container_id, 0) as fast,
        ):
            read_fast = await take(fast, 200)  # while slow reads nothing
            read_slow = await take(slow, 101)  # a full queue: read without waiting
    finally:
        await followers.close()
    first = number(read_fast[0])
    assert [number(line) for line in read_fast] == list(range(first, first + 200))
    notice = read_slow[0]
    assert notice.stream == "stderr" and notice.at is None
    match = re.search(r"(\d+) log lines were dropped", notice.text)
    assert match and int(match[1]) >= 50
    kept = [number(line) for line in read_slow[1:]]
    assert kept == list(range(kept[0], kept[0] + 100))
    assert kept[-1] >= number(read_fast[-1])  # the newest lines were kept


async def test_lines_longer_than_a_docker_message_come_whole(
    host: Host, followers: LogFollowers
) -> None:
    container_id = await run(host, LONG_LINES)
    expected = {("stdout", LONG), ("stdout", "after"), ("stderr", LONG)}
    async with followers.subscribe(host, container_id, 0) as live:
        container = await host.docker.containers.get(container_id)
        await (await container.exec(["sh", "-c", ": > /tmp/go"])).start(detach=True)
        from_stream = await take(live, 3)
        async with followers.subscribe(host, container_id, 10) as later:
            from_tail = await take(later, 3)
    assert {(line.stream, line.text) for line in from_stream} == expected
    assert {(line.stream, line.text) for line in from_tail} == expected


async def test_a_tty_container_is_all_stdout(host: Host, followers: LogFollowers) -> None:
    slug = new_slug(host, "logs")
    container = await host.docker.containers.run(
        {
            "Image": BASE_IMAGE,
            "Cmd": ["sh", "-c", "echo one; echo two >&2; sleep 60"],
            "Tty": True,
            "Labels": {runtime.LABEL_MANAGED: "true", runtime.LABEL_SERVICE: slug},
            "StopTimeout": 1,
            "HostConfig": {"NetworkMode": await runtime.ensure_network(host, slug), "Init": True},
        },
        name=f"digi-{slug}-tty",
    )
    await wait_printed(host, container.id, 2)
    async with followers.subscribe(host, container.id, 10) as lines:
        got = await take(lines, 2)
        await container.stop()
        assert await take(lines, 1) == []  # stopped: the iterator ends
    assert [(line.stream, line.text) for line in got] == [("stdout", "one"), ("stdout", "two")]
    assert all(line.at is not None for line in got)


async def test_an_unknown_container_is_not_found(host: Host, followers: LogFollowers) -> None:
    for container_id in ("0" * 64, "../../info"):
        with pytest.raises(NotFound, match="does not exist on host local"):
            async with followers.subscribe(host, container_id, 10):
                raise AssertionError("subscribed to a container that does not exist")
    assert followers.active_streams() == 0
    assert docker_connections_in_use(host) == []
