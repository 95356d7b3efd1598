"""Custom domains: ownership by a TXT record on a real DNS server, and Caddy's TLS ``ask``.

addDomain's plan limit, uniqueness and privacy are in test_platform.py."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from digi_core import domains
from digi_core.errors import ConfigError
from digi_core.models import Domain, Plan, Role, Service, ServiceStatus, User
from tests.core.api.conftest import Api
from tests.core.api.test_platform import (
    ADD_DOMAIN,
    add_domain,
    component_id,
    create_service,
    refused,
)
from tests.dns_server import DnsServer

VERIFY_DOMAIN = """
    mutation ($id: ID!) { verifyDomain(id: $id) { id name verified verifiedAt } }
"""
DOMAINS = "{ domains { name verified verifiedAt } }"


@pytest.fixture
async def dns_server(api: Api) -> AsyncIterator[DnsServer]:
    """A DNS server the API asks for verification records."""
    server = DnsServer()
    await server.start()
    api.settings.verify_nameservers = f"127.0.0.1:{server.port}"
    yield server
    server.close()


@pytest.fixture
def silent_nameserver(api: Api) -> Iterator[None]:
    """A UDP port that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        api.settings.verify_nameservers = f"127.0.0.1:{silent.getsockname()[1]}"
        yield


async def verify_domain(api: Api, token: str, domain_id: str) -> dict[str, Any]:
    return (await api.gql(VERIFY_DOMAIN, {"id": domain_id}, token))["verifyDomain"]


def token_of(domain: dict[str, Any]) -> str:
    return str(domain["verificationRecord"].split(" TXT ")[1])


# addDomain: what test_platform.py does not try


async def test_custom_domains_refuse_more_hostile_input_saying_why(api: Api) -> None:
    _, pro = await api.user(plan=Plan.PRO)
    component = await component_id(api, pro)
    for domain, why in (
        ("shop example.com", "parts of 1-63 lowercase letters"),
        ("bücher.example", "punycode"),
        ("\uff53hop.example.com", "punycode"),
        ("*.example.com", "parts of 1-63 lowercase letters"),
        ("_digi-verify.example.com", "parts of 1-63 lowercase letters"),
        (f"{'a' * 64}.com", "parts of 1-63"),
        (".".join(["a" * 63] * 4) + ".com", "at most 253 characters"),
        ("127.0.0.1", "use a domain name you own"),
        ("::1", "parts of 1-63"),
        ("com", "use a domain name you own"),
        ("shop.localhost", "belongs to the platform (localhost)"),
    ):
        error = await refused(api, ADD_DOMAIN, {"domain": domain, "componentId": component}, pro)
        assert (error.code, error.field) == ("BAD_USER_INPUT", "domain"), domain
        assert why in str(error), (domain, str(error))
    assert not await Domain.exists()


# verifyDomain


async def test_verify_domain_names_the_record_until_it_is_there(
    api: Api, dns_server: DnsServer
) -> None:
    user, pro = await api.user(plan=Plan.PRO)
    component = await component_id(api, pro)
    shop = await add_domain(api, pro, "shop.example.com", component)
    www = await add_domain(api, pro, "www.example.com", component)
    token = token_of(shop)

    error = await refused(api, VERIFY_DOMAIN, {"id": shop["id"]}, pro)
    assert (error.code, error.field) == ("DOMAIN_NOT_VERIFIED", "id")
    assert f"TXT record _digi-verify.shop.example.com with the value {token}" in str(error)
    assert "few minutes" in str(error)

    dns_server.set("_digi-verify.shop.example.com", "TXT", '"digi-verify=0123456789abcdef"')
    error = await refused(api, VERIFY_DOMAIN, {"id": shop["id"]}, pro)
    assert error.code == "DOMAIN_NOT_VERIFIED"
    assert not (await Domain.get(name="shop.example.com")).verified_at

    # Split into strings as long records are, beside another TXT record; a lapsed plan
    # does not matter to verifying a domain added while on Pro.
    await User.filter(id=user.id).update(plan=Plan.FREE)
    dns_server.set(
        "_digi-verify.shop.example.com",
        "TXT",
        '"v=spf1 -all"',
        f'"{token[:12]}" "{token[12:30]}" "{token[30:]}"',
    )
    verified = await verify_domain(api, pro, shop["id"])
    assert verified["verified"] is True and verified["verifiedAt"]
    row = await Domain.get(name="shop.example.com")
    assert row.verified_at is not None

    # Verified already: answered as it is, without asking DNS again.
    dns_server.remove("_digi-verify.shop.example.com", "TXT")
    asked = len(dns_server.questions)
    assert await verify_domain(api, pro, shop["id"]) == verified
    assert len(dns_server.questions) == asked
    assert (await Domain.get(name="shop.example.com")).verified_at == row.verified_at

    # Quotes and spaces pasted into a DNS provider's form are forgiven.
    dns_server.set("_digi-verify.www.example.com", "TXT", f'" \\"{token_of(www)}\\" "')
    assert (await verify_domain(api, pro, www["id"]))["verified"] is True

    seen = {d["name"]: d for d in (await api.gql(DOMAINS, token=pro))["domains"]}
    assert seen["shop.example.com"]["verifiedAt"] == verified["verifiedAt"]
    assert seen["www.example.com"]["verified"] is True


async def test_verify_domain_is_the_owners_alone(api: Api, dns_server: DnsServer) -> None:
    _, admin = await api.user(role=Role.ADMIN)
    platform = await add_domain(api, admin, "apps.example.com")
    _, alice = await api.user(plan=Plan.PRO)
    _, bob = await api.user(plan=Plan.PRO)
    alices = await add_domain(api, alice, "alice.example.com", await component_id(api, alice))
    dns_server.set("_digi-verify.alice.example.com", "TXT", f'"{token_of(alices)}"')

    for domain_id, token in ((alices["id"], bob), (platform["id"], admin), ("x", alice)):
        error = await refused(api, VERIFY_DOMAIN, {"id": domain_id}, token)
        assert (error.code, error.field) == ("NOT_FOUND", "id"), domain_id
    assert dns_server.questions == []
    assert not (await Domain.get(name="alice.example.com")).verified_at
    error = await refused(api, VERIFY_DOMAIN, {"id": alices["id"]}, None)
    assert error.code == "UNAUTHENTICATED"

    assert (await verify_domain(api, alice, alices["id"]))["verified"] is True
    bobs_view = (await api.gql(DOMAINS, token=bob))["domains"]
    assert [d["name"] for d in bobs_view] == ["apps.example.com"]


async def test_a_silent_nameserver_is_a_clear_error_within_the_lifetime(
    api: Api, silent_nameserver: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(domains, "LIFETIME_SECONDS", 0.5)
    _, pro = await api.user(plan=Plan.PRO)
    shop = await add_domain(api, pro, "shop.example.com", await component_id(api, pro))

    started = time.monotonic()
    error = await refused(api, VERIFY_DOMAIN, {"id": shop["id"]}, pro)
    assert time.monotonic() - started < 3
    assert error.code == "DNS_UNAVAILABLE"
    assert "DNS did not answer for _digi-verify.shop.example.com" in str(error)
    assert "try again in a minute" in str(error)
    assert not (await Domain.get(name="shop.example.com")).verified_at


def test_nameservers_are_ips_with_optional_ports() -> None:
    assert domains.parse_nameservers(None) == []
    assert domains.parse_nameservers(" ") == []
    assert domains.parse_nameservers("1.1.1.1, 127.0.0.1:5353,[::1]:5300,2001:db8::1") == [
        ("1.1.1.1", 53),
        ("127.0.0.1", 5353),
        ("::1", 5300),
        ("2001:db8::1", 53),
    ]
    bad = ("dns.google", "1.1.1", "1.1.1.1:0", "1.1.1.1:65536", "1.1.1.1:x", "[1.1.1.1]:53")
    for value in (*bad, "[::1", "[::1]53", "[::1]:", "1.1.1.1:\uff15\uff13"):
        with pytest.raises(ConfigError) as caught:
            domains.parse_nameservers(f"8.8.8.8,{value}")
        assert caught.value.problems == [
            f"DIGI_VERIFY_NAMESERVERS: {value!r} is not a nameserver address; use "
            + domains.NAMESERVER_FORMS
        ]


# may_issue_certificate and GET /internal/tls/ask


async def live_service(api: Api) -> tuple[User, dict[str, Any]]:
    """A Pro user's new service with the verified custom domain shop.example.com."""
    user, pro = await api.user(plan=Plan.PRO)
    service = await create_service(api, pro)
    await add_domain(api, pro, "shop.example.com", str(service["components"][0]["id"]))
    await Domain.filter(name="shop.example.com").update(verified_at=datetime.now(UTC))
    return user, service


async def test_certificates_only_for_verified_domains_and_hostnames_of_live_services(
    api: Api,
) -> None:
    async def may(name: str) -> bool:
        return await domains.may_issue_certificate(name, api.settings)

    user, service = await live_service(api)
    _, admin = await api.user(role=Role.ADMIN)
    # Before any platform domain, apps live under PLATFORM_DOMAIN.
    on_localhost = str(service["components"][0]["hostname"])
    assert on_localhost.endswith(".localhost") and await may(on_localhost)
    await add_domain(api, admin, "apps.example.com")
    hostname = on_localhost.replace(".localhost", ".apps.example.com")
    _, pro = await api.user(plan=Plan.PRO)
    await add_domain(api, pro, "unverified.example.com", await component_id(api, pro))

    assert await may("shop.example.com") and await may("Shop.Example.COM.")
    assert await may(hostname)
    for name in (
        on_localhost,
        "unverified.example.com",
        "random.example.org",
        "example.com",
        "nope.apps.example.com",
        f"x.{hostname}",
        "apps.example.com",
        "",
        ".",
        "shop.example.com\n.evil",
        "\uff53hop.example.com",
        "*.apps.example.com",
        "_digi-verify.shop.example.com",
        "a" * 300,
        ".".join(["a" * 63] * 5),
    ):
        assert not await may(name), name

    async def serving_stops(change: Awaitable[object], undo: Awaitable[object]) -> None:
        await change
        assert not await may("shop.example.com") and not await may(hostname)
        await undo
        assert await may("shop.example.com") and await may(hostname)

    service_row = Service.filter(slug=service["slug"])
    now = datetime.now(UTC)
    for status in (ServiceStatus.SUSPENDED, ServiceStatus.DELETING):
        await serving_stops(
            service_row.update(status=status), service_row.update(status=ServiceStatus.CREATED)
        )
    owner = User.filter(id=user.id)
    await serving_stops(owner.update(suspended_at=now), owner.update(suspended_at=None))
    await serving_stops(owner.update(deleted_at=now), owner.update(deleted_at=None))
    await service_row.update(deleted_at=now)
    assert not await may("shop.example.com") and not await may(hostname)


async def test_tls_ask_endpoint_answers_caddy(api: Api) -> None:
    _, service = await live_service(api)
    hostname = service["components"][0]["hostname"]
    for name, status in (
        ("shop.example.com", 200),
        (hostname, 200),
        ("random.example.org", 404),
        ("shop.example.com\r\nX: y", 404),
        ("", 400),
    ):
        response = await api.client.get("/internal/tls/ask", params={"domain": name})
        assert response.status == status, name
        if status == 200:
            assert await response.text() == "ok"
    response = await api.client.get("/internal/tls/ask")
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "domain"
