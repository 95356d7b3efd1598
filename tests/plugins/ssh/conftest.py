"""A real OpenSSH server standing for a bring-your-own server: it lets in the platform key and
forwards this machine's Docker socket."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from digi_core.config import Settings
from digi_core.ssh import platform_key, public_key_line
from tests.sshd import Sshd


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    await server.start()
    yield server
    await server.stop()


def docker_socket() -> str:
    """This machine's Docker socket, which the 'server' behind sshd forwards."""
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        return docker_host.removeprefix("unix://")
    return "/var/run/docker.sock"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ssh_settings(migrated: Settings, sshd: Sshd, tmp_path: Path) -> Settings:
    """Settings naming the sshd as server ``web1``, with a platform key it lets in."""
    key_file = tmp_path / "platform" / "id_ed25519"
    sshd.authorize(public_key_line(platform_key(key_file)))
    return migrated.model_copy(
        update={
            "ssh_servers": f"web1={sshd.user}@127.0.0.1:{sshd.port}",
            "ssh_key_file": key_file,
            "host_docker_socket": docker_socket(),
            # Nothing listens there: these tests use the server's Docker engine, not its Caddy.
            "host_caddy_admin": f"127.0.0.1:{unused_port()}",
        }
    )
