"""The ssh compute provider: services run on servers the operator already has ("bring your
own server"), reached over SSH with the platform's key.

The simplest complete compute plugin, and a model for a third-party one. Each server in
DIGI_SSH_SERVERS must run Docker and a Caddy (its admin API on DIGI_HOST_CADDY_ADMIN, apps
served on DIGI_HTTP_PORT) and let the platform's public key in. Nothing is provisioned: a
service is placed on the server with the fewest services and stays there; the server's Docker
socket and Caddy admin API come to Digi through one pooled SSH connection (digi_core.ssh).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

import aiodocker
import aiohttp

from digi_core.errors import DigiError, NotBuiltYet, NotConfigured, NotFound
from digi_core.models import Host as HostRow
from digi_core.models import HostStatus as HostState
from digi_core.models import Service
from digi_core.providers import ComputeProvider, Host, HostStatus, LogSink, StatsPoint
from digi_core.ssh import KEY_FILE, HostUnreachable, SshPool, SshTarget, platform_key
from digi_ssh.servers import VARIABLE, Server, parse_servers

if TYPE_CHECKING:
    from digi_core.config import Settings

log = logging.getLogger(__name__)

PROVIDER = "ssh"


def server_host_id(server: Server) -> str:
    """The id the core knows the server's host by (unique across providers)."""
    return f"{PROVIDER}-{server.name}"


class SshCompute(ComputeProvider):
    name = PROVIDER

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._servers: dict[str, Server] = {}
        self._pool: SshPool | None = None
        # One placement at a time per service: two workers resuming one deploy get one host.
        self._placing: dict[int, asyncio.Lock] = {}

    async def start(self, settings: Settings) -> None:
        if self._pool is not None:
            return
        # A bad entry fails the start, with the variable's name, before any deploy tries it.
        servers = parse_servers(settings.ssh_servers)
        key_file = settings.ssh_key_file or settings.data_dir / KEY_FILE
        key = await asyncio.to_thread(platform_key, key_file)
        self._settings = settings
        self._servers = {server.name: server for server in servers}
        self._pool = SshPool(key)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def host_for_service(self, service: Service, log: LogSink) -> Host:
        """The service's server, placing it on the emptiest one the first time."""
        if not self._servers:
            raise NotConfigured(
                f"the ssh compute provider has no servers: set {VARIABLE} "
                "(name=user@address[:port], comma separated)"
            )
        async with self._placing.setdefault(service.id, asyncio.Lock()):
            placement = await self._placement(service)
            if placement is None:
                server = await self._emptiest_server()
                placement = server, await self._row(server)
                await self._place(service, placement[1])
                await log(f"placed on server {server.name} ({server.username}@{server.address})")
            return await self._connect(*placement)

    async def existing_host(self, service: Service) -> Host | None:
        placement = await self._placement(service)
        return None if placement is None else await self._connect(*placement)

    async def release_service(self, service: Service) -> None:
        """The server is shared and stays; the core has removed the service's containers."""

    async def connected_hosts(self) -> list[Host]:
        hosts = []
        for row in await HostRow.filter(provider=PROVIDER, external_id__in=list(self._servers)):
            try:
                hosts.append(await self._connect(self._servers[row.external_id], row))
            except DigiError as error:
                log.warning("server %s is not connected: %s", row.external_id, error)
        return hosts

    async def hosts(self) -> list[HostStatus]:
        statuses = []
        for server in self._servers.values():
            status = HostStatus(
                id=server_host_id(server),
                provider=self.name,
                name=server.name,
                status="unreachable",
            )
            try:
                host = await self._connect(server, await self._row(server))
                info = await host.docker.system.info()
            except (DigiError, aiodocker.DockerError, aiohttp.ClientError, OSError) as error:
                log.warning("server %s does not answer: %s", server.name, error)
            else:
                status.status = HostState.READY.value
                status.cpus = info.get("NCPU")
                status.memory_total_bytes = info.get("MemTotal")
            statuses.append(status)
        return statuses

    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        if host_id not in {server_host_id(server) for server in self._servers.values()}:
            raise NotFound(f"the ssh provider has no host {host_id}", field="hostId")
        # A plain server keeps no usage series; Digi would have to sample it itself.
        raise NotBuiltYet(self.name, "host_stats")

    async def _placement(self, service: Service) -> tuple[Server, HostRow] | None:
        """Where the service is placed now, read from the database (``service`` may be an old
        copy); ``None`` when it is not, or its server left DIGI_SSH_SERVERS."""
        placed = await Service.filter(id=service.id).values_list("host_id", flat=True)
        if not placed or placed[0] is None:
            return None
        row = await HostRow.get_or_none(id=placed[0], provider=PROVIDER)
        if row is None or row.external_id not in self._servers:
            return None
        return self._servers[row.external_id], row

    async def _emptiest_server(self) -> Server:
        """The server with the fewest live services; the first listed on a tie."""

        async def live_services(server: Server) -> int:
            return await Service.filter(
                host__provider=PROVIDER, host__external_id=server.name, deleted_at__isnull=True
            ).count()

        counts = [await live_services(server) for server in self._servers.values()]
        return list(self._servers.values())[counts.index(min(counts))]

    async def _row(self, server: Server) -> HostRow:
        """The server's Host row, made on first use; it keeps the pinned SSH host key."""
        row, _ = await HostRow.get_or_create(
            provider=PROVIDER,
            external_id=server.name,
            defaults={"name": server.name, "address": server.address, "status": HostState.READY},
        )
        if row.address != server.address:
            row.address = server.address
            await row.save(update_fields=["address", "updated_at"])
        return row

    async def _place(self, service: Service, row: HostRow) -> None:
        await Service.filter(id=service.id).update(host_id=row.id)
        service.host = row

    async def _connect(self, server: Server, row: HostRow) -> Host:
        """The server's Host through the pool, pinning its SSH host key on first contact."""
        if self._pool is None or self._settings is None:
            raise RuntimeError("SshCompute.start() was not called")
        caddy_host, _, caddy_port = self._settings.host_caddy_admin.rpartition(":")
        target = SshTarget(
            address=server.address,
            port=server.port,
            username=server.username,
            host_key=row.ssh_host_key,
            docker_socket=self._settings.host_docker_socket,
            caddy_admin=(caddy_host, int(caddy_port)),
        )

        async def pin(line: str) -> None:
            await HostRow.filter(id=row.id).update(ssh_host_key=line)
            row.ssh_host_key = line

        upstream = f"{await _ip(server)}:{self._settings.http_port}"
        return await self._pool.host(server_host_id(server), target, upstream, pin)


async def _ip(server: Server) -> str:
    """The server's IP, as the master tier routes to it (a bracketed IPv6 in an upstream)."""
    try:
        ip = ipaddress.ip_address(server.address)
    except ValueError:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                server.address, None, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise HostUnreachable(
                f"cannot resolve the address {server.address} of server {server.name}: {error}"
            ) from None
        ip = ipaddress.ip_address(found[0][4][0])
    return f"[{ip}]" if ip.version == 6 else str(ip)
