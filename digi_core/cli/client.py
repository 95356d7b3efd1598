"""A small client of Digi's API for the CLI: GraphQL over HTTP, subscriptions over WebSocket
(graphql-transport-ws), the health check and source uploads. Failures become DigiErrors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping
from types import TracebackType
from typing import IO, Any, cast

import aiohttp

from digi_core.errors import ALL_ERRORS, DigiError, RateLimited, Unauthenticated

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
# Streams (logs, uploads) last as long as they need; only connecting is bounded.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
HANDSHAKE_SECONDS = 15.0
HEARTBEAT_SECONDS = 20.0
SUBSCRIPTION_ID = "1"
# graphql-transport-ws close codes for a refused connection_init.
REFUSED_CLOSE_CODES = {4401, 4403}

_KNOWN_ERRORS = {error.code: error for error in ALL_ERRORS}


class Unreachable(DigiError):
    """Digi's API does not answer at the URL the CLI was given."""

    code = "UNREACHABLE"
    exit_code = 69  # EX_UNAVAILABLE from sysexits.h, like CONFIG's 78


class ConnectionLost(Unreachable):
    """A live stream (logs, deploy status) broke: callers may reconnect."""


class NotSignedIn(Unauthenticated):
    """UNAUTHENTICATED, said for the CLI; ``api_message`` keeps the API's own words."""

    def __init__(self, message: str, api_message: str) -> None:
        super().__init__(message)
        self.api_message = api_message


class ApiError(DigiError):
    """An answer with an error code this CLI has no class for (a newer server's, GraphQL's)."""


def api_error(code: str, message: str, extensions: Mapping[str, Any] | None = None) -> DigiError:
    """The typed error for an API error code, so its exit code is the documented one."""
    extensions = extensions or {}
    if code == RateLimited.code:
        retry = int(extensions.get("retryAfter") or 0)
        return RateLimited(message, retry_after_seconds=retry)
    known = _KNOWN_ERRORS.get(code)
    if known is not None:
        return known(message, field=extensions.get("field"))
    error_type = cast(type[ApiError], type(ApiError.__name__, (ApiError,), {"code": code}))
    return error_type(message)


class ApiClient:
    """One CLI command's connection to the API at ``api_url``, signed in with ``token``.

    ``token_source`` says where the token came from, for the message when it is refused.
    """

    def __init__(self, api_url: str, token: str | None, token_source: str = "") -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.token_source = token_source
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=REQUEST_TIMEOUT)
        return self

    async def __aexit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ApiClient in `async with`")
        return self._session

    async def query(self, document: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The ``data`` of a query or mutation; the first GraphQL error raised as a DigiError."""
        body = {"query": document, "variables": dict(variables or {})}
        answer = await self._request("POST", "/graphql", json=body)
        if answer.get("errors"):
            raise self._graphql_error(answer["errors"][0])
        return answer["data"]

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``: 200 when healthy, 503 naming the failing part; both answer JSON."""
        return await self._request("GET", "/healthz", accept_statuses={503})

    async def upload(self, service_id: str, component: str, archive: IO[bytes]) -> dict[str, Any]:
        """Send a source tarball to ``POST /uploads/<serviceId>/<component>``."""
        archive.seek(0)
        return await self._request(
            "POST",
            f"/uploads/{service_id}/{component}",
            # Chunks, not the file itself: aiohttp would close it, and it is sent once per
            # upload component.
            data=_chunks(archive),
            timeout=STREAM_TIMEOUT,
            headers={"Content-Type": "application/gzip"},
        )

    async def _request(
        self, method: str, path: str, *, accept_statuses: Collection[int] = (), **options: Any
    ) -> dict[str, Any]:
        url = self.api_url + path
        try:
            async with self.session.request(method, url, **options) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise self.unreachable(error) from None
        except TimeoutError:
            raise self.unreachable("no answer in time") from None
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(
                f"{url} answered HTTP {status} without Digi's JSON: is --api the address of "
                "Digi's API (`digi server`)?"
            )
        problem = answer.get("error")
        if isinstance(problem, dict) and status >= 400 and status not in accept_statuses:
            raise self._graphql_error({"message": problem.get("message"), "extensions": problem})
        return answer

    def _graphql_error(self, error: Mapping[str, Any]) -> DigiError:
        extensions = error.get("extensions") or {}
        message = str(error.get("message") or "the API refused the request")
        code = str(extensions.get("code") or "GRAPHQL")
        if code == Unauthenticated.code:
            return self.unauthenticated(message)
        return api_error(code, message, extensions)

    def unauthenticated(self, message: str = "") -> NotSignedIn:
        """What to do when the API wants a sign-in: `digi login`, or why the token was refused
        (the API's messages say what to do: sign in again, or ask the operator)."""
        if not self.token:
            return NotSignedIn(
                f"not signed in to {self.api_url}: run `digi login` (or set DIGI_TOKEN)", message
            )
        where = f" ({self.token_source})" if self.token_source else ""
        reason = message or "sign in again with `digi login`"
        return NotSignedIn(f"{self.api_url} refused the token{where}: {reason}", message)

    def unreachable(self, reason: object, *, lost: bool = False) -> Unreachable:
        if lost:
            return ConnectionLost(
                f"lost the connection to Digi's API at {self.api_url} ({_reason(reason)})"
            )
        return Unreachable(
            f"cannot reach Digi's API at {self.api_url} ({_reason(reason)}): "
            "start it with `digi server`, or point --api (or DIGI_API_URL) at it"
        )

    async def subscribe(
        self, document: str, variables: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        """Each ``data`` of a subscription until the server completes it.

        A refused token raises Unauthenticated, an error answer its DigiError, and a
        connection that breaks on the way ConnectionLost (reconnecting is the caller's choice).
        """
        url = self.api_url.replace("http", "ws", 1) + "/graphql"
        try:
            websocket = await self.session.ws_connect(
                url,
                protocols=["graphql-transport-ws"],
                heartbeat=HEARTBEAT_SECONDS,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise self.unreachable(error) from None
        except aiohttp.WSServerHandshakeError as error:
            raise ApiError(f"{url} refused the WebSocket (HTTP {error.status})") from None
        async with websocket:
            try:
                async for data in self._subscription(websocket, document, variables):
                    yield data
            except (aiohttp.ClientError, ConnectionResetError) as error:
                raise self.unreachable(error, lost=True) from None

    async def _subscription(
        self,
        websocket: aiohttp.ClientWebSocketResponse,
        document: str,
        variables: Mapping[str, Any] | None,
    ) -> AsyncIterator[Any]:
        await websocket.send_json({"type": "connection_init", "payload": {"token": self.token}})
        await self._acknowledged(websocket)
        await websocket.send_json(
            {
                "id": SUBSCRIPTION_ID,
                "type": "subscribe",
                "payload": {"query": document, "variables": dict(variables or {})},
            }
        )
        while True:
            message = await self._receive(websocket)
            kind = message.get("type")
            if kind == "ping":
                await websocket.send_json({"type": "pong"})
            elif kind == "next":
                payload = message.get("payload") or {}
                if payload.get("errors"):
                    raise self._graphql_error(payload["errors"][0])
                yield payload.get("data")
            elif kind == "error":
                errors = message.get("payload") or [{}]
                raise self._graphql_error(errors[0])
            elif kind == "complete":
                return

    async def _acknowledged(self, websocket: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                while (await self._receive(websocket)).get("type") != "connection_ack":
                    pass
        except TimeoutError:
            raise self.unreachable("no connection_ack in time") from None

    async def _receive(self, websocket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        message = await websocket.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            answer: dict[str, Any] = json.loads(message.data)
            return answer
        if websocket.close_code in REFUSED_CLOSE_CODES:
            raise self.unauthenticated()
        reason = f"closed with code {websocket.close_code}" if websocket.close_code else "closed"
        raise self.unreachable(reason, lost=True)


def _reason(error: object) -> str:
    """A short cause: aiohttp's own messages repeat the address and the SSL context."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {error.host}"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        return error.os_error.strerror or type(error.os_error).__name__
    return str(error) or type(error).__name__


async def _chunks(archive: IO[bytes], size: int = 256 * 1024) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(archive.read, size):
        yield chunk
