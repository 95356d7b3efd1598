"""Every typed key of the aiohttp app's state, in one place."""

from __future__ import annotations

import pluggy
import redis.asyncio as redis
from aiohttp import web

from digi_core.config import Settings
from digi_core.plugins import Registry

SETTINGS = web.AppKey("settings", Settings)
PLUGIN_MANAGER = web.AppKey("plugin_manager", pluggy.PluginManager)
REGISTRY = web.AppKey("registry", Registry)
REDIS = web.AppKey("redis", redis.Redis)
