"""The SSH host transport against a real sshd: Docker and a TCP service forwarded, host keys
pinned, a changed key refused, a dropped connection made again."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncssh
import pytest
from aiohttp import web

from digi_core.ssh import (
    HostKeyChanged,
    HostUnreachable,
    SshPool,
    SshTarget,
    platform_key,
    public_key_line,
)
from tests.conftest import DIGI
from tests.sshd import Sshd


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def key(tmp_path: Path, sshd: Sshd) -> asyncssh.SSHKey:
    key = platform_key(tmp_path / "data" / "ssh" / "id_ed25519")
    sshd.authorize(public_key_line(key))
    return key


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    """A plain HTTP service on the 'host', standing where its Caddy admin API would be."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


class Pins(list[str]):
    async def __call__(self, line: str) -> None:
        self.append(line)


def target(sshd: Sshd, web_port: int, host_key: str | None = None) -> SshTarget:
    return SshTarget(
        address="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        host_key=host_key,
        caddy_admin=("127.0.0.1", web_port),
    )


async def test_docker_and_caddy_admin_answer_through_the_tunnel_and_the_key_is_pinned(
    sshd: Sshd, key: asyncssh.SSHKey, web_port: int
) -> None:
    pool = SshPool(key)
    pins = Pins()
    try:
        host = await pool.host("h1", target(sshd, web_port), "127.0.0.1:8080", pins)
        assert (await host.docker.version())["ApiVersion"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{host.caddy_admin_url}/config/") as response,
        ):
            assert await response.json() == {"path": "/config/"}
        assert pins == [sshd.host_key]
        # Pooled: the same tunnel (and local ends) for the same host.
        again = await pool.host("h1", target(sshd, web_port, pins[0]), "127.0.0.1:8080", pins)
        assert again.caddy_admin_url == host.caddy_admin_url
        assert len(pool.tunnels()) == 1
    finally:
        await pool.close()


async def test_a_changed_host_key_is_refused(
    sshd: Sshd, key: asyncssh.SSHKey, web_port: int
) -> None:
    pinned = sshd.host_key
    await sshd.rotate_host_key()
    pool = SshPool(key)
    try:
        with pytest.raises(HostKeyChanged, match="not the one pinned"):
            await pool.host("h1", target(sshd, web_port, pinned), "127.0.0.1:8080", Pins())
    finally:
        await pool.close()


async def test_a_key_the_host_does_not_know_is_a_clear_error(
    sshd: Sshd, tmp_path: Path, web_port: int
) -> None:
    stranger = platform_key(tmp_path / "other" / "id_ed25519")
    pool = SshPool(stranger)
    try:
        with pytest.raises(HostUnreachable, match="refused Digi's SSH key"):
            await pool.host("h1", target(sshd, web_port), "127.0.0.1:8080", Pins())
    finally:
        await pool.close()


async def test_an_unreachable_host_is_a_clear_error(key: asyncssh.SSHKey, web_port: int) -> None:
    pool = SshPool(key)
    closed = SshTarget(address="127.0.0.1", port=1, caddy_admin=("127.0.0.1", web_port))
    try:
        with pytest.raises(HostUnreachable, match="cannot reach host h1 over SSH"):
            await pool.host("h1", closed, "127.0.0.1:8080", Pins())
    finally:
        await pool.close()


async def test_a_dropped_connection_is_made_again(
    sshd: Sshd, key: asyncssh.SSHKey, web_port: int
) -> None:
    pool = SshPool(key)
    try:
        host = await pool.host("h1", target(sshd, web_port), "127.0.0.1:8080", Pins())
        assert (await host.docker.version())["ApiVersion"]
        sshd.drop_connections()
        # The next request reaches the engine again; the client's pooled local connection
        # may notice the drop once, as it would a restarted local engine.
        for attempt in range(2):
            try:
                # Bounded: a relay that waits on a dead channel must fail the test, not hang it.
                assert (await asyncio.wait_for(host.docker.version(), 20))["ApiVersion"]
                break
            except (aiohttp.ClientError, OSError):
                if attempt:
                    raise
        assert (await host.docker.containers.list(limit=1)) is not None
    finally:
        await pool.close()


def test_the_platform_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "ssh" / "id_ed25519"
    first = platform_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_line(platform_key(path)) == public_key_line(first)
    assert public_key_line(first).startswith("ssh-ed25519 ")


def test_digi_ssh_key_prints_the_platform_key(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    key_file = tmp_path / "platform" / "id_ed25519"
    env = {**subprocess_env, "DIGI_SSH_KEY": str(key_file)}
    printed = subprocess.run(
        [DIGI, "ssh-key"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == public_key_line(platform_key(key_file))
