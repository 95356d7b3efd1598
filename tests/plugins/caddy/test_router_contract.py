"""The Caddy router against the Router contract, on a Caddy Digi starts (host tier)."""

from __future__ import annotations

import pytest

from digi_caddy.router import CaddyRouter
from digi_core.config import Settings
from digi_core.providers import Host
from tests.contracts.router import RoutedHost, RouterContract
from tests.plugins.caddy.conftest import StartUpstream


class TestCaddyRouter(RouterContract):
    @pytest.fixture
    async def routed(
        self, router: CaddyRouter, host: Host, settings: Settings, start_upstream: StartUpstream
    ) -> RoutedHost:
        return RoutedHost(router, host, f"http://127.0.0.1:{settings.http_port}/", start_upstream)
