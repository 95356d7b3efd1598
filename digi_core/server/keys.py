"""Every typed key of the aiohttp app's state, in one place."""

from __future__ import annotations

import pluggy
import redis.asyncio as redis
from aiohttp import web

from digi_core.config import Settings
from digi_core.container_logs import LogFollowers
from digi_core.crypto import SecretBox
from digi_core.deploys.queue import JobQueue
from digi_core.deploys.shared import Deps
from digi_core.deploys.worker import Worker
from digi_core.events import EventBus
from digi_core.mail import Mailer
from digi_core.plugins import Registry
from digi_core.ratelimit import RateLimiter

SETTINGS = web.AppKey("settings", Settings)
PLUGIN_MANAGER = web.AppKey("plugin_manager", pluggy.PluginManager)
REGISTRY = web.AppKey("registry", Registry)
REDIS = web.AppKey("redis", redis.Redis)
EVENT_BUS = web.AppKey("event_bus", EventBus)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
MAILER = web.AppKey("mailer", Mailer)
SECRET_BOX = web.AppKey("secret_box", SecretBox)
JOB_QUEUE = web.AppKey("job_queue", JobQueue)
DEPS = web.AppKey("deploy_deps", Deps)
WORKER = web.AppKey("worker", Worker)
LOG_FOLLOWERS = web.AppKey("log_followers", LogFollowers)
