"""The local compute provider: one host, this machine's Docker engine (DOCKER_HOST or socket)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiodocker

from digi_core.errors import NotBuiltYet, NotFound
from digi_core.providers import ComputeProvider, Host, HostStatus, LogSink, StatsPoint

if TYPE_CHECKING:
    from digi_core.config import Settings
    from digi_core.models import Service

log = logging.getLogger(__name__)

LOCAL_HOST_ID = "local"


class LocalCompute(ComputeProvider):
    name = "local"

    def __init__(self) -> None:
        self._docker: aiodocker.Docker | None = None
        self._host: Host | None = None

    async def start(self, settings: Settings) -> None:
        if self._docker is None:
            self._docker = aiodocker.Docker()
            self._host = Host(
                id=LOCAL_HOST_ID,
                docker=self._docker,
                caddy_admin_url=settings.caddy_admin_url,
                upstream=f"127.0.0.1:{settings.http_port}",
            )

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
            self._host = None

    async def host_for_service(self, service: Service, log: LogSink) -> Host:
        """Every service runs on this machine's engine: nothing to provision."""
        if self._host is None:
            raise RuntimeError("LocalCompute.start() was not called")
        return self._host

    async def connected_hosts(self) -> list[Host]:
        return [self._host] if self._host is not None else []

    async def release_service(self, service: Service) -> None:
        """The engine is shared, not the service's own: nothing to destroy."""

    async def hosts(self) -> list[HostStatus]:
        if self._docker is None:
            raise RuntimeError("LocalCompute.start() was not called")
        try:
            info = await self._docker.system.info()
        except (aiodocker.DockerError, OSError) as error:
            log.warning("the local Docker engine does not answer: %s", error)
            return [
                HostStatus(id=LOCAL_HOST_ID, provider=self.name, name="local", status="unreachable")
            ]
        return [
            HostStatus(
                id=LOCAL_HOST_ID,
                provider=self.name,
                name=str(info.get("Name", "local")),
                status="ready",
                cpus=info.get("NCPU"),
                memory_total_bytes=info.get("MemTotal"),
            )
        ]

    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        if host_id != LOCAL_HOST_ID:
            raise NotFound(f"the local provider has no host {host_id}", field="hostId")
        raise NotBuiltYet(self.name, "host_stats")
