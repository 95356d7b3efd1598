"""The per-request GraphQL context: who is calling, from where, and the app's services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from aiohttp import web

from digi_core import accounts, services
from digi_core.errors import BadUserInput, Forbidden, RateLimited, Unauthenticated
from digi_core.models import ApiToken, EnvVar, Role, Service, User
from digi_core.server.keys import (
    DEPS,
    EVENT_BUS,
    JOB_QUEUE,
    LOG_FOLLOWERS,
    MAILER,
    RATE_LIMITER,
    REGISTRY,
    SECRET_BOX,
    SETTINGS,
)

if TYPE_CHECKING:
    from digi_core.api.types import EnvVar as EnvVarType
    from digi_core.config import Settings
    from digi_core.container_logs import LogFollowers
    from digi_core.crypto import SecretBox
    from digi_core.deploys.queue import JobQueue
    from digi_core.deploys.shared import Deps
    from digi_core.events import EventBus
    from digi_core.mail import Mailer
    from digi_core.plugins import Registry
    from digi_core.ratelimit import RateLimiter

SESSION_COOKIE = "digi_session"
MAX_PAGE = 100

# Rate limits of sign-in, sign-up and token endpoints: attempts per window.
PER_IP = (30, 300)
PER_ACCOUNT = (10, 900)


def page_limit(limit: int, *, field_name: str = "limit") -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BadUserInput(f"{field_name} must be between 1 and {MAX_PAGE}", field=field_name)
    return limit


def page_offset(offset: int) -> int:
    if offset < 0:
        raise BadUserInput("offset cannot be negative", field="offset")
    return offset


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else of the session cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


@dataclass
class Context:
    request: web.Request
    response: web.StreamResponse
    connection_params: dict[str, Any] | None = None
    _authenticated: bool = field(default=False, init=False)
    _user: User | None = field(default=None, init=False)
    _token: ApiToken | None = field(default=None, init=False)
    _default_domain: str | None = field(default=None, init=False)
    # Set by resolvers that learn who acts only as they run (signIn): the audit log's actor.
    audit_actor: User | None = field(default=None, init=False)
    audit_metadata: dict[str, Any] = field(default_factory=dict, init=False)

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS]

    @property
    def registry(self) -> Registry:
        return self.request.app[REGISTRY]

    @property
    def bus(self) -> EventBus:
        return self.request.app[EVENT_BUS]

    @property
    def limiter(self) -> RateLimiter:
        return self.request.app[RATE_LIMITER]

    @property
    def mailer(self) -> Mailer:
        return self.request.app[MAILER]

    @property
    def box(self) -> SecretBox:
        return self.request.app[SECRET_BOX]

    @property
    def jobs(self) -> JobQueue:
        return self.request.app[JOB_QUEUE]

    @property
    def deploy_deps(self) -> Deps:
        return self.request.app[DEPS]

    @property
    def log_followers(self) -> LogFollowers:
        return self.request.app[LOG_FOLLOWERS]

    @property
    def ip(self) -> str | None:
        return self.request.remote

    @property
    def token(self) -> ApiToken | None:
        return self._token

    def _presented_token(self) -> str | None:
        if self.connection_params is not None:
            params = {str(k).lower(): v for k, v in self.connection_params.items()}
            value = params.get("token") or params.get("authorization") or ""
            value = str(value).removeprefix("Bearer ").removeprefix("bearer ").strip()
            return value or None
        return bearer_token(self.request)

    async def current_user(self) -> User | None:
        """The caller, checked against the database on every request (revocation is instant)."""
        if not self._authenticated:
            presented = self._presented_token()
            if presented is not None:
                self._user, self._token = await accounts.authenticate(
                    self.settings.secret_value, presented
                )
            self._authenticated = True
        return self._user

    async def require_user(self) -> User:
        user = await self.current_user()
        if user is None:
            raise Unauthenticated(
                "sign in first: send `Authorization: Bearer <token>` (digi login makes one)"
            )
        return user

    async def require_admin(self) -> User:
        user = await self.require_user()
        if user.role is not Role.ADMIN:
            raise Forbidden("this operation is for the platform's admins")
        return user

    async def recheck(self) -> User:
        """For long-lived connections: authenticate again, so a revoked token stops here."""
        self._authenticated = False
        return await self.require_user()

    async def rate_limit(self, action: str, account: str | None = None) -> None:
        """Count an attempt per IP and per account; a 429 with Retry-After past the limit."""
        try:
            await self.limiter.hit(
                f"{action}:ip:{self.ip}", limit=PER_IP[0], window_seconds=PER_IP[1]
            )
            if account:
                await self.limiter.hit(
                    f"{action}:account:{account.strip().lower()}",
                    limit=PER_ACCOUNT[0],
                    window_seconds=PER_ACCOUNT[1],
                )
        except RateLimited as error:
            self.mark_rate_limited(error)
            raise

    def mark_rate_limited(self, error: RateLimited) -> None:
        if isinstance(self.response, web.Response):
            self.response.set_status(429)
            self.response.headers["Retry-After"] = str(error.retry_after_seconds)

    async def default_domain(self) -> str:
        """The platform domain apps live under: the admins' default, else PLATFORM_DOMAIN."""
        if self._default_domain is None:
            self._default_domain = await services.default_domain(self.settings.platform_domain)
        return self._default_domain

    async def env_vars_of(self, service: Service) -> list[EnvVarType]:
        """A service's variables; the values only for its owner (an admin sees keys)."""
        from digi_core.api.types import EnvVar as EnvVarType

        user = await self.require_user()
        owner = service.owner_id == user.id  # type: ignore[attr-defined]
        rows = await EnvVar.filter(service_id=service.id).order_by("scope", "key")
        return [
            EnvVarType(
                id=strawberry.ID(str(row.id)),
                key=row.key,
                value=self.box.decrypt(row.value_encrypted) if owner else None,
                component=row.scope or None,
            )
            for row in rows
        ]


Info = strawberry.Info[Context, None]
