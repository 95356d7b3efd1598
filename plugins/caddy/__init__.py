"""Routing through Caddy's JSON admin API: a master tier and one Caddy per host."""

from __future__ import annotations

from collections.abc import Callable

from digi_caddy.router import CaddyRouter
from digi_core import hookimpl
from digi_core.providers import Router


@hookimpl
def register_routers(register: Callable[[Router], None]) -> None:
    register(CaddyRouter())
