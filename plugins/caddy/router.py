"""The Caddy router (routes arrive with the routing issue)."""

from __future__ import annotations

from collections.abc import Sequence

from digi_core.errors import NotBuiltYet
from digi_core.providers import Host, Route, Router


class CaddyRouter(Router):
    name = "caddy"

    async def set_routes(self, host: Host, routes: Sequence[Route]) -> None:
        raise NotBuiltYet(self.name, "set_routes")

    async def remove_routes(self, host: Host, hostnames: Sequence[str]) -> None:
        raise NotBuiltYet(self.name, "remove_routes")

    async def routes(self, host: Host) -> list[Route]:
        raise NotBuiltYet(self.name, "routes")

    async def sync(self, host: Host, routes: Sequence[Route]) -> None:
        raise NotBuiltYet(self.name, "sync")
