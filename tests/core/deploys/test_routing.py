"""Routing end to end: deployed apps through the master tier (a second Caddy), on-demand TLS
with Caddy's internal CA, and the 503 pages of failed and suspended apps."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from digi_core.models import Plan, Role
from tests.core.deploys.conftest import Platform, free_port, running_platform
from tests.core.deploys.test_pipeline import deployed, hostname
from tests.dns_server import DnsServer
from tests.plugins.caddy.conftest import bare_caddy  # noqa: F401  (a fixture)

CRASHING = '[{name: "web", type: DOCKER, image: "digi-test-web:latest", port: 8000, ' \
    'startCommand: "exit 3"}]'  # fmt: skip


async def through(port: int, hostname: str, *, tls: bool = False) -> tuple[int, str]:
    """A request for ``hostname`` to a Caddy port on loopback; with ``tls``, its SNI too."""
    scheme = "https" if tls else "http"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(
            f"{scheme}://127.0.0.1:{port}/",
            headers={"Host": hostname},
            ssl=context if tls else False,
            server_hostname=hostname if tls else None,
        ) as response,
    ):
        return response.status, await response.text()


async def admin_json(url: str, method: str = "GET", body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body) as response,
    ):
        assert response.status < 400, await response.text()
        return await response.json() if response.content_length else None


@pytest.fixture
async def behind_master(
    tmp_path: Path,
    clean_env: Path,
    test_images: dict[str, str],
    bare_caddy: str,  # noqa: F811
) -> AsyncIterator[Platform]:
    """The embedded platform whose public entry is a second Caddy (the master tier)."""
    async with running_platform(
        "sqlite", tmp_path, MASTER_CADDY_URL=bare_caddy, DIGI_MASTER_HTTP_PORT=free_port()
    ) as platform:
        yield platform


async def test_apps_answer_through_the_master_which_is_never_reconfigured_for_them(
    behind_master: Platform,
) -> None:
    platform = behind_master
    master = str(platform.settings.master_caddy_url)
    port = platform.settings.master_http_port
    _, token = await platform.user("owner@example.com")
    first = hostname(await deployed(platform, token, "first"), platform)
    assert await through(port, first) == (200, "hello from web\n")
    config = await admin_json(f"{master}/config/")

    second = hostname(await deployed(platform, token, "second"), platform)
    assert await through(port, second) == (200, "hello from web\n")
    assert await admin_json(f"{master}/config/") == config  # a record moved, not the config
    status, page = await through(port, "nobody.localhost")
    assert status == 502 and "No app answers at this address" in page

    # The master lost Digi's servers (restarted empty, edited by hand): the reconciler's sync
    # puts them back.
    await admin_json(f"{master}/config/apps/http/servers/digi-public-http", "DELETE")
    await platform.worker.reconciler.reconcile()
    assert await through(port, second) == (200, "hello from web\n")


@pytest.fixture
async def with_tls(
    tmp_path: Path, clean_env: Path, test_images: dict[str, str]
) -> AsyncIterator[Platform]:
    async with running_platform(
        "sqlite", tmp_path, DIGI_TLS="internal", DIGI_HTTPS_PORT=free_port()
    ) as platform:
        yield platform


async def test_https_certificates_come_on_demand_only_for_names_digi_serves(
    with_tls: Platform,
) -> None:
    platform = with_tls
    port = platform.settings.https_port
    _, token = await platform.user("owner@example.com")
    service = await deployed(platform, token)
    name = hostname(service, platform)
    assert service["components"][0]["url"] == f"https://{name}:{port}"
    assert await through(port, name, tls=True) == (200, "hello from web\n")
    for stranger in ("random.example.com", "nope.localhost"):
        with pytest.raises(aiohttp.ClientConnectorError, match=r"(?i)ssl|alert"):
            await through(port, stranger, tls=True)
    # Plain HTTP on the host tier's port still answers on this machine.
    assert await through(platform.http_port, name) == (200, "hello from web\n")


async def test_a_failed_first_deploy_answers_a_503_page(platform: Platform) -> None:
    _, token = await platform.user("owner@example.com")
    service = await platform.service(token, "broken", CRASHING)
    job = await platform.deploy(token, service["id"])
    [row] = await platform.wait_job(job["jobId"])
    assert row.status.value == "failed"
    await platform.expect(hostname(service, platform), 503, contains="last deploy failed")


async def test_a_suspended_owners_apps_answer_a_503_page_until_lifted(platform: Platform) -> None:
    owner, token = await platform.user("owner@example.com")
    _, admin = await platform.user("admin@example.com", role=Role.ADMIN)
    name = hostname(await deployed(platform, token), platform)
    await platform.expect(name, 200, "hello from web")
    suspend = "mutation($id: ID!) { suspendUser(id: $id) { suspended } }"
    await platform.gql(suspend, {"id": str(owner.id)}, token=admin)
    await platform.expect(name, 503, contains="This app is suspended")
    await platform.worker.reconciler.reconcile()  # the reconciler agrees
    await platform.expect(name, 503, contains="This app is suspended")
    lift = "mutation($id: ID!) { unsuspendUser(id: $id) { suspended } }"
    await platform.gql(lift, {"id": str(owner.id)}, token=admin)
    await platform.expect(name, 200, "hello from web")


@pytest.fixture
async def with_dns_and_tls(
    tmp_path: Path, clean_env: Path, test_images: dict[str, str]
) -> AsyncIterator[tuple[Platform, DnsServer]]:
    dns_server = DnsServer()
    await dns_server.start()
    try:
        async with running_platform(
            "sqlite",
            tmp_path,
            DIGI_TLS="internal",
            DIGI_HTTPS_PORT=free_port(),
            DIGI_VERIFY_NAMESERVERS=f"127.0.0.1:{dns_server.port}",
        ) as platform:
            yield platform, dns_server
    finally:
        dns_server.close()


async def test_a_custom_domain_is_routed_and_gets_a_certificate_once_verified(
    with_dns_and_tls: tuple[Platform, DnsServer],
) -> None:
    platform, dns_server = with_dns_and_tls
    https = platform.settings.https_port
    _, token = await platform.user("owner@example.com", plan=Plan.PRO)
    service = await deployed(platform, token)
    add = (
        'mutation($c: ID!) { addDomain(domain: "shop.example.org", componentId: $c) '
        "{ id verificationRecord } }"
    )
    domain = (await platform.gql(add, {"c": service["components"][0]["id"]}, token=token))[
        "addDomain"
    ]
    await platform.expect("shop.example.org", 404)  # not before it is verified
    with pytest.raises(aiohttp.ClientConnectorError):
        await through(https, "shop.example.org", tls=True)

    name, _, value = domain["verificationRecord"].split(" ", 2)
    dns_server.set(name, "TXT", f'"{value}"')
    verify = "mutation($id: ID!) { verifyDomain(id: $id) { verified } }"
    assert (await platform.gql(verify, {"id": domain["id"]}, token=token))["verifyDomain"] == {
        "verified": True
    }
    await platform.expect("shop.example.org", 200, "hello from web")
    assert await through(https, "shop.example.org", tls=True) == (200, "hello from web\n")
    await platform.worker.reconciler.reconcile()  # the reconciler keeps it
    await platform.expect("shop.example.org", 200, "hello from web")

    remove = "mutation($id: ID!) { removeDomain(id: $id) }"
    assert (await platform.gql(remove, {"id": domain["id"]}, token=token))["removeDomain"]
    await platform.expect("shop.example.org", 404)
