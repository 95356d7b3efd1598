"""A real Digi API on a loopback port, on SQLite in-process or on PostgreSQL with Redis, with
a real SMTP server catching its mail."""

from __future__ import annotations

import asyncio
import email
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from digi_core import accounts
from digi_core.config import Settings, load_settings
from digi_core.models import Plan, Role, User
from digi_core.server.app import init_app
from tests.conftest import REDIS_URL, TEST_SECRET, upgrade

PASSWORD = "correct horse battery"


class Inbox:
    """Collects what the SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        self.arrived.set()
        return "250 OK"

    async def next_link(self, to: str) -> str:
        """The link in the newest mail to ``to`` (waits up to 10 s for it)."""
        async with asyncio.timeout(10):
            while True:
                for message in reversed(self.messages):
                    if message["To"] == to:
                        self.messages.remove(message)
                        body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
                        return re.search(r"https?://\S+", body).group(0)  # type: ignore[union-attr]
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def inbox() -> Any:
    handler = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port  # type: ignore[attr-defined]
    yield handler
    controller.stop()


class GraphQLErrors(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors
        self.code = errors[0].get("extensions", {}).get("code")
        self.field = errors[0].get("extensions", {}).get("field")


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    settings: Settings
    inbox: Inbox
    backend: str
    tokens: dict[str, str] = field(default_factory=dict)

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        return response.status, await response.json()

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        """The ``data`` of a query that must succeed; GraphQLErrors when it does not."""
        _, body = await self.post(query, variables, token)
        if body.get("errors"):
            raise GraphQLErrors(body["errors"])
        return body["data"]

    async def user(
        self, email: str | None = None, *, role: Role = Role.USER, plan: Plan = Plan.FREE
    ) -> tuple[User, str]:
        """A new user and an API token for them, made directly (not through the API)."""
        address = email or f"user{len(self.tokens)}-{id(self) % 10000}@example.com"
        user = await accounts.create_user(address, PASSWORD, "Test User", role=role)
        if plan is not Plan.FREE:
            user.plan = plan
            await user.save()
        _, token = await accounts.issue_token(TEST_SECRET, user, "test")
        self.tokens[address] = token
        return user, token

    def ws_url(self) -> str:
        return str(self.client.make_url("/graphql")).replace("http://", "ws://")

    async def websocket(
        self, protocol: str = "graphql-transport-ws"
    ) -> aiohttp.ClientWebSocketResponse:
        return await self.client.session.ws_connect(self.ws_url(), protocols=[protocol])


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def api(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clean_env: Path,
    inbox: Inbox,
    postgres_url: str,
) -> AsyncIterator[Api]:
    """The whole app on a loopback port, on each backend, with a Redis namespace of its own."""
    overrides: dict[str, Any] = {
        "DIGI_SECRET": TEST_SECRET,
        "DIGI_DATA_DIR": tmp_path / "data",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": inbox.port,  # type: ignore[attr-defined]
        "SMTP_SECURITY": "none",
        "DIGI_LOAD_PLUGINS": "local,proxmox,caddy,cloudflare,stripe,railpack",
        # No Caddy for API tests: nothing here reaches a deployed app.
        "DIGI_CADDY_MANAGE": "false",
    }
    if request.param == "postgres+redis":
        overrides["DATABASE_URL"] = postgres_url
        overrides["REDIS_URL"] = REDIS_URL
        # A prefix of its own: no other test or concurrent run shares its counts or channels.
        overrides["DIGI_REDIS_PREFIX"] = f"digitest{uuid.uuid4().hex[:12]}:"
    settings = load_settings(**overrides)
    await upgrade(settings)
    test_client = TestClient(TestServer(init_app(settings)))
    await test_client.start_server()
    yield Api(client=test_client, settings=settings, inbox=inbox, backend=request.param)
    await test_client.close()
