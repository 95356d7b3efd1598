"""The Caddy that Digi starts and supervises: restarts with its routes, reuse, clear errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from digi_caddy.process import CaddyStartError
from digi_caddy.router import FALLBACK_BODY, CaddyRouter
from digi_core.config import Settings
from digi_core.errors import ConfigError
from digi_core.internal_dns import ZoneServer
from digi_core.providers import Host, Route
from tests.plugins.caddy.conftest import StartUpstream, answers, caddy_settings, free_port, host_of


def caddy_pids(settings: Settings) -> list[int]:
    """Every live process started with this test's Caddy config (there should be one or none)."""
    config = str(settings.data_dir / "caddy" / "caddy.json").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and config in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(seconds: float, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` answers true, failing after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_a_killed_caddy_comes_back_by_itself_with_its_routes(
    router: CaddyRouter,
    host: Host,
    settings: Settings,
    start_upstream: StartUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="digi_caddy.process")
    managed = router.managed
    assert managed is not None and not managed.reused
    first_pid = managed.pid
    assert first_pid is not None
    await router.set_routes(host, [Route("survivor.example.com", await start_upstream("web"))])
    assert (settings.data_dir / "caddy" / "config" / "caddy" / "autosave.json").exists()

    os.kill(first_pid, signal.SIGKILL)

    async def restarted() -> bool:
        return managed.restarts == 1

    await until(5, restarted)  # counted once Caddy answers and Digi's server is checked
    await answers(settings, "survivor.example.com", (200, "web survivor.example.com"))
    second_pid = managed.pid
    assert second_pid is not None and second_pid != first_pid
    await answers(settings, "unknown.example.com", (404, FALLBACK_BODY))

    assert caddy_pids(settings) == [second_pid]
    assert f"Caddy (pid {first_pid}) exited with code -9; restarting it" in caplog.text

    await router.close()
    assert not is_running(second_pid)
    assert managed.pid is None
    assert caddy_pids(settings) == []


@pytest.mark.parametrize("after_seconds", [0, 0.21, 0.3])
async def test_closing_while_caddy_restarts_leaves_no_process(
    router: CaddyRouter, settings: Settings, after_seconds: float
) -> None:
    """Closed during the backoff, the spawn or the wait for the admin API."""
    assert router.managed is not None and router.managed.pid is not None
    os.kill(router.managed.pid, signal.SIGKILL)
    await asyncio.sleep(after_seconds)
    await router.close()
    assert caddy_pids(settings) == []


async def test_routes_survive_a_restart_of_digi_even_on_a_new_admin_port(
    settings: Settings, start_upstream: StartUpstream, zone: ZoneServer
) -> None:
    """--resume loads Caddy's autosave; Digi points it at today's admin address first."""
    router = CaddyRouter()
    await router.start(settings)
    try:
        await router.set_routes(host_of(settings), [Route("kept.example.com", "127.0.0.1:9")])
    finally:
        await router.close()

    moved = settings.model_copy(update={"caddy_admin_url": f"http://127.0.0.1:{free_port()}"})
    router = CaddyRouter()
    await router.start(moved)
    try:
        assert await router.routes(host_of(moved)) == [Route("kept.example.com", "127.0.0.1:9")]
    finally:
        await router.close()


async def test_an_admin_api_that_already_answers_is_reused(
    router: CaddyRouter, host: Host, settings: Settings
) -> None:
    assert router.managed is not None
    running = router.managed.pid
    second = CaddyRouter()
    await second.start(settings)
    try:
        assert second.managed is not None
        assert second.managed.reused and second.managed.pid is None
        await second.set_routes(host, [Route("shared.example.com", "127.0.0.1:9")])
    finally:
        await second.close()
    # Closing the router that only borrowed it leaves that Caddy running.
    assert running is not None and is_running(running)
    assert await router.routes(host) == [Route("shared.example.com", "127.0.0.1:9")]


@pytest.mark.parametrize(
    "admin_url",
    ["http://0.0.0.0:2999", "http://10.1.2.3:2999", "http://example.com:2999",
     "https://127.0.0.1:2999", "http://127.0.0.1", "unix:///run/caddy.sock"],
)  # fmt: skip
async def test_a_non_loopback_admin_url_is_refused(clean_env: Path, admin_url: str) -> None:
    settings = caddy_settings(clean_env / "data", DIGI_CADDY_ADMIN_URL=admin_url)
    router = CaddyRouter()
    with pytest.raises(ConfigError, match=r"DIGI_CADDY_ADMIN_URL: .* on this machine"):
        await router.start(settings)
    assert router.managed is None
    assert not (settings.data_dir / "caddy" / "caddy.json").exists()


async def test_a_missing_caddy_binary_says_what_to_install(clean_env: Path) -> None:
    settings = caddy_settings(clean_env / "data", DIGI_CADDY_BIN="/nonexistent")
    router = CaddyRouter()
    with pytest.raises(CaddyStartError) as caught:
        await router.start(settings)
    assert "'/nonexistent'" in caught.value.message
    assert "apt-get install caddy" in caught.value.message
    assert "DIGI_CADDY_BIN" in caught.value.message


async def test_a_caddy_that_cannot_start_shows_its_last_output(clean_env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = caddy_settings(clean_env / "data", DIGI_HTTP_PORT=port)
        router = CaddyRouter()
        with pytest.raises(
            CaddyStartError, match=r"(?s)exited with code 1.*address already in use"
        ):
            await router.start(settings)
    assert router.managed is None


async def test_an_unreadable_autosave_is_set_aside(settings: Settings, zone: ZoneServer) -> None:
    autosave = settings.data_dir / "caddy" / "config" / "caddy" / "autosave.json"
    autosave.parent.mkdir(parents=True)
    autosave.write_text('{"admin": {"listen": ')  # a Caddy killed while writing it
    router = CaddyRouter()
    await router.start(settings)
    try:
        assert await router.routes(host_of(settings)) == []
        assert autosave.with_suffix(".broken").read_text() == '{"admin": {"listen": '
        assert json.loads(autosave.read_text())["admin"]["listen"] == settings.caddy_admin_url[7:]
    finally:
        await router.close()
