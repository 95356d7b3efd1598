"""Hosts reached over SSH: a pooled connection per host that brings the host's Docker socket and
Caddy admin API to this machine, so aiodocker and the Caddy router work as they do locally.

Nothing on the host listens on a network for Docker or Caddy: Digi connects with the
platform's key, pins the host key on first contact and refuses a changed one. Each host gets a
local Unix socket (Docker) and a loopback port (Caddy admin) that stay the same for the life of
the pool; every connection made to them opens a channel on the host's SSH connection, which
is made again when it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiodocker
from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    # asyncssh still names cryptography's DSA classes, deprecated since cryptography 47: every
    # `digi` command (the SSH-reached compute plugins load with it) would print the warning,
    # and nobody running Digi can act on it. Digi's own keys are ed25519.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

from digi_core.errors import DigiError
from digi_core.providers import Host

log = logging.getLogger(__name__)

KEY_FILE = Path("ssh") / "id_ed25519"
CONNECT_TIMEOUT = 15.0
# Dead connections are noticed within ~45 s even when no request is in flight.
KEEPALIVE_SECONDS = 15
RELAY_CHUNK = 1 << 16


class HostUnreachable(DigiError):
    code = "HOST_UNREACHABLE"
    http_status = 503
    exit_code = 69


class HostKeyChanged(DigiError):
    """The host offered another SSH host key than the one pinned on first contact."""

    code = "HOST_KEY_CHANGED"
    http_status = 409
    exit_code = 7


def platform_key(key_file: Path) -> asyncssh.SSHKey:
    """The platform's SSH key: read from ``key_file``, or generated there once (mode 0600)."""
    if key_file.exists():
        return asyncssh.read_private_key(key_file)
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="digi")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key.export_private_key())
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    """The OpenSSH ``authorized_keys`` line of ``key`` (what cloud-init's ``sshkeys`` takes)."""
    return key.export_public_key().decode().strip()


@dataclass(frozen=True)
class SshTarget:
    """Where a host's sshd is, who Digi logs in as, and where Docker and Caddy are on it."""

    address: str
    port: int = 22
    username: str = "root"
    host_key: str | None = None
    """The pinned host key (an OpenSSH public key line); ``None`` until first contact."""
    docker_socket: str = "/var/run/docker.sock"
    caddy_admin: tuple[str, int] = ("127.0.0.1", 2019)

    def describe(self) -> str:
        return f"{self.username}@{self.address}:{self.port}"


PinHostKey = Callable[[str], Awaitable[None]]
"""Called with the host key line on first contact; stores it (the host's database row)."""


class SshTunnel:
    """One host: its SSH connection, made on demand, and the local ends of its forwards."""

    def __init__(
        self,
        host_id: str,
        target: SshTarget,
        key: asyncssh.SSHKey,
        directory: Path,
        pin: PinHostKey,
    ) -> None:
        self.host_id = host_id
        self.target = target
        self._key = key
        self._pin = pin
        self.docker_socket = directory / "docker.sock"
        self.caddy_port = 0
        self._connection: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._servers: list[asyncio.Server] = []
        self._relays: set[asyncio.Task[None]] = set()
        self.docker: aiodocker.Docker | None = None

    @property
    def caddy_admin_url(self) -> str:
        return f"http://127.0.0.1:{self.caddy_port}"

    async def open(self) -> None:
        """Connect (pinning or checking the host key), then listen on the local ends."""
        await self.connection()
        self.docker_socket.unlink(missing_ok=True)
        unix = await asyncio.start_unix_server(self._relay_docker, path=str(self.docker_socket))
        self.docker_socket.chmod(0o600)
        tcp = await asyncio.start_server(self._relay_caddy, "127.0.0.1", 0)
        self.caddy_port = tcp.sockets[0].getsockname()[1]
        self._servers = [unix, tcp]
        self.docker = aiodocker.Docker(url=f"unix://{self.docker_socket}")

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, made again when the last one dropped."""
        async with self._connecting:
            current = self._connection
            if current is not None and not current.is_closed():
                return current
            if current is not None:
                log.warning("SSH connection to host %s dropped: reconnecting", self.host_id)
            self._connection = await self._connect()
            return self._connection

    async def _connect(self) -> asyncssh.SSHClientConnection:
        target = self.target
        # Trusted host keys, CA keys, revoked keys; None accepts the first key (then pinned).
        known_hosts: (
            tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] | None
        ) = ([asyncssh.import_public_key(target.host_key)], [], []) if target.host_key else None
        try:
            connection = await asyncio.wait_for(
                asyncssh.connect(
                    target.address,
                    target.port,
                    username=target.username,
                    client_keys=[self._key],
                    known_hosts=known_hosts,
                    agent_path=None,
                    config=None,
                    keepalive_interval=KEEPALIVE_SECONDS,
                    keepalive_count_max=3,
                ),
                CONNECT_TIMEOUT,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyChanged(
                f"host {self.host_id} ({target.describe()}) offered an SSH host key that is "
                "not the one pinned on first contact: Digi refuses to connect. If the server "
                "was reinstalled on purpose, remove the host and add it again; otherwise "
                "someone may be intercepting the connection."
            ) from None
        except asyncssh.PermissionDenied:
            raise HostUnreachable(
                f"host {self.host_id} ({target.describe()}) refused Digi's SSH key: add the "
                "platform's public key (digi ssh-key) to the user's authorized_keys"
            ) from None
        except (OSError, asyncssh.Error, TimeoutError) as error:
            raise HostUnreachable(
                f"cannot reach host {self.host_id} over SSH at {target.describe()}: "
                f"{error or type(error).__name__}"
            ) from None
        if target.host_key is None:
            offered = connection.get_server_host_key()
            if offered is not None:
                line = public_key_line(offered)
                await self._pin(line)
                self.target = replace(target, host_key=line)
                log.info("pinned the SSH host key of host %s: %s", self.host_id, line)
        return connection

    async def _relay_docker(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._relay(
            reader, writer, lambda c: c.open_unix_connection(self.target.docker_socket)
        )

    async def _relay_caddy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = self.target.caddy_admin
        await self._relay(reader, writer, lambda c: c.open_connection(host, port))

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        open_channel: Callable[
            [asyncssh.SSHClientConnection],
            Awaitable[tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]],
        ],
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        try:
            try:
                remote_reader, remote_writer = await open_channel(await self.connection())
            except (DigiError, OSError, asyncssh.Error) as error:
                log.warning("host %s: a forwarded connection failed: %s", self.host_id, error)
                return
            upstream = asyncio.create_task(_pump(reader, remote_writer))
            try:
                # Until the host's side ends: after that nothing more can come, so the local
                # end is closed too. Waiting for both would hang a keep-alive client whose
                # next request goes to a channel that died with its connection.
                await _pump(remote_reader, writer)
            except asyncio.CancelledError:
                # The tunnel is closing. End quietly: asyncio's server logs a connection
                # handler that ends cancelled as an error.
                pass
            finally:
                upstream.cancel()
                remote_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._relays.discard(task)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for relay in list(self._relays):
            relay.cancel()
        if self._relays:
            await asyncio.gather(*self._relays, return_exceptions=True)
        if self.docker is not None:
            await self.docker.close()
            self.docker = None
        if self._connection is not None:
            self._connection.close()
            with contextlib.suppress(Exception):
                await self._connection.wait_closed()
            self._connection = None
        self.docker_socket.unlink(missing_ok=True)


async def _pump(
    reader: asyncio.StreamReader | asyncssh.SSHReader[bytes],
    writer: asyncio.StreamWriter | asyncssh.SSHWriter[bytes],
) -> None:
    """Copy one direction until its end, then pass the end on (HTTP half-closes)."""
    try:
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncssh.Error, ConnectionError):
        pass


class SshPool:
    """One tunnel per host, kept open between deploys; closed with the provider."""

    def __init__(self, key: asyncssh.SSHKey) -> None:
        self.key = key
        # Unix socket paths are short (108 bytes): not under a possibly long data directory.
        self._directory = Path(tempfile.mkdtemp(prefix="digi-ssh-"))
        self._tunnels: dict[str, SshTunnel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def host(self, host_id: str, target: SshTarget, upstream: str, pin: PinHostKey) -> Host:
        """The core's view of the host: Docker and Caddy through the tunnel."""
        tunnel = await self.tunnel(host_id, target, pin)
        assert tunnel.docker is not None
        return Host(
            id=host_id,
            docker=tunnel.docker,
            caddy_admin_url=tunnel.caddy_admin_url,
            upstream=upstream,
            caddy_admin_host="{}:{}".format(*target.caddy_admin),
        )

    async def tunnel(self, host_id: str, target: SshTarget, pin: PinHostKey) -> SshTunnel:
        async with self._locks.setdefault(host_id, asyncio.Lock()):
            tunnel = self._tunnels.get(host_id)
            if tunnel is not None and _same_place(tunnel.target, target):
                await tunnel.connection()
                return tunnel
            if tunnel is not None:
                await self._drop(host_id)
            directory = self._directory / str(len(self._tunnels) + 1)
            while directory.exists():
                directory = directory.with_name(directory.name + "x")
            directory.mkdir(mode=0o700)
            tunnel = SshTunnel(host_id, target, self.key, directory, pin)
            try:
                await tunnel.open()
            except BaseException:
                await tunnel.close()
                raise
            self._tunnels[host_id] = tunnel
            return tunnel

    def tunnels(self) -> list[SshTunnel]:
        return list(self._tunnels.values())

    async def forget(self, host_id: str) -> None:
        """Close the host's tunnel (the host is gone, or its key must be pinned again)."""
        async with self._locks.setdefault(host_id, asyncio.Lock()):
            await self._drop(host_id)

    async def _drop(self, host_id: str) -> None:
        tunnel = self._tunnels.pop(host_id, None)
        if tunnel is not None:
            await tunnel.close()

    async def close(self) -> None:
        for host_id in list(self._tunnels):
            await self._drop(host_id)
        shutil.rmtree(self._directory, ignore_errors=True)


def _same_place(current: SshTarget, wanted: SshTarget) -> bool:
    # The pinned key is the tunnel's own business once it connected.
    return replace(current, host_key=None) == replace(wanted, host_key=None)
