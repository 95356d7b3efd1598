"""The Proxmox VE compute provider (provisioning arrives with the Proxmox issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digi_core.errors import NotBuiltYet
from digi_core.providers import ComputeProvider, Host, HostStatus, LogSink, StatsPoint

if TYPE_CHECKING:
    from digi_core.models import Service


class ProxmoxCompute(ComputeProvider):
    name = "proxmox"

    async def host_for_service(self, service: Service, log: LogSink) -> Host:
        raise NotBuiltYet(self.name, "host_for_service")

    async def release_service(self, service: Service) -> None:
        raise NotBuiltYet(self.name, "release_service")

    async def hosts(self) -> list[HostStatus]:
        raise NotBuiltYet(self.name, "hosts")

    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        raise NotBuiltYet(self.name, "host_stats")
