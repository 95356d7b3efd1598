"""Domains, billing with Stripe off, and the admins' compute operations through the GraphQL API."""

from __future__ import annotations

import re
from typing import Any

import pytest

from digi_core.models import Coupon, Domain, DomainKind, Plan, Role, User
from tests.core.api.conftest import Api, GraphQLErrors

DOMAIN_FIELDS = "id name kind isDefault verified componentId verificationRecord"
ADD_DOMAIN = f"""
    mutation ($domain: String!, $componentId: ID) {{
        addDomain(domain: $domain, componentId: $componentId) {{ {DOMAIN_FIELDS} }}
    }}
"""
REMOVE_DOMAIN = "mutation ($id: ID!) { removeDomain(id: $id) }"
SET_DOMAIN_DEFAULT = f"mutation ($id: ID!) {{ setDomainDefault(id: $id) {{ {DOMAIN_FIELDS} }} }}"
DOMAINS = "{ domains { name kind isDefault } }"
CREATE_SERVICE = """
    mutation ($name: String!) {
        createService(name: $name, components: [{name: "web", type: DOCKER, image: "nginx"}]) {
            slug url components { id hostname url }
        }
    }
"""


async def refused(
    api: Api, query: str, variables: dict[str, Any] | None, token: str | None
) -> GraphQLErrors:
    with pytest.raises(GraphQLErrors) as caught:
        await api.gql(query, variables, token)
    return caught.value


async def add_domain(
    api: Api, token: str, domain: str, component_id: str | None = None
) -> dict[str, Any]:
    variables = {"domain": domain, "componentId": component_id}
    return (await api.gql(ADD_DOMAIN, variables, token))["addDomain"]


async def create_service(api: Api, token: str, name: str = "shop") -> dict[str, Any]:
    return (await api.gql(CREATE_SERVICE, {"name": name}, token))["createService"]


async def component_id(api: Api, token: str) -> str:
    """The id of the only component of a new service of the token's user."""
    service = await create_service(api, token)
    return str(service["components"][0]["id"])


# platform domains


async def test_platform_domains_have_one_default_that_new_urls_use(api: Api) -> None:
    _, admin = await api.user(role=Role.ADMIN)
    _, token = await api.user()

    first = await add_domain(api, admin, "apps.example.com")
    assert first["name"] == "apps.example.com" and first["kind"] == "PLATFORM"
    assert first["isDefault"] is True
    assert first["componentId"] is None and first["verificationRecord"] is None
    second = await add_domain(api, admin, "Apps.Example.ORG.")
    assert second["name"] == "apps.example.org" and second["isDefault"] is False
    error = await refused(api, ADD_DOMAIN, {"domain": "apps.example.org"}, admin)
    assert (error.code, error.field) == ("CONFLICT", "domain")

    switched = (await api.gql(SET_DOMAIN_DEFAULT, {"id": second["id"]}, admin))["setDomainDefault"]
    assert switched["isDefault"] is True
    defaults = await Domain.filter(is_default=True).values_list("name", flat=True)
    assert defaults == ["apps.example.org"]

    service = await create_service(api, token)
    assert service["url"] == f"http://{service['slug']}.apps.example.org:8080"
    assert service["components"][0]["hostname"] == f"{service['slug']}.apps.example.org"

    error = await refused(api, REMOVE_DOMAIN, {"id": second["id"]}, admin)
    assert (error.code, error.field) == ("CONFLICT", "id")
    error = await refused(api, REMOVE_DOMAIN, {"id": first["id"]}, token)
    assert error.code == "FORBIDDEN"
    assert (await api.gql(REMOVE_DOMAIN, {"id": first["id"]}, admin))["removeDomain"] is True
    assert await Domain.filter(kind=DomainKind.PLATFORM).count() == 1


async def test_only_admins_add_platform_domains(api: Api) -> None:
    _, token = await api.user(plan=Plan.PRO)
    error = await refused(api, ADD_DOMAIN, {"domain": "apps.example.com"}, token)
    assert error.code == "FORBIDDEN"
    error = await refused(api, SET_DOMAIN_DEFAULT, {"id": "1"}, token)
    assert error.code == "FORBIDDEN"
    assert await Domain.all().count() == 0


# custom domains


async def test_custom_domains_need_pro_and_answer_their_verification_record(api: Api) -> None:
    _, free = await api.user()
    error = await refused(
        api,
        ADD_DOMAIN,
        {"domain": "shop.example.com", "componentId": await component_id(api, free)},
        free,
    )
    assert error.code == "PLAN_LIMIT"

    _, pro = await api.user(plan=Plan.PRO)
    component = await component_id(api, pro)
    domain = await add_domain(api, pro, "Shop.Example.com", component)
    assert domain["name"] == "shop.example.com" and domain["kind"] == "CUSTOM"
    assert domain["verified"] is False and domain["isDefault"] is False
    assert domain["componentId"] == component
    assert re.fullmatch(
        r"_digi-verify\.shop\.example\.com TXT digi-verify=[0-9a-f]{32}",
        domain["verificationRecord"],
    )

    _, other_pro = await api.user(plan=Plan.PRO)
    other_component = await component_id(api, other_pro)
    for token, target in ((pro, component), (other_pro, other_component)):
        error = await refused(
            api, ADD_DOMAIN, {"domain": "shop.example.com.", "componentId": target}, token
        )
        assert (error.code, error.field) == ("CONFLICT", "domain")
    assert await Domain.filter(name="shop.example.com").count() == 1


async def test_custom_domains_refuse_platform_addresses_and_hostile_input(api: Api) -> None:
    _, admin = await api.user(role=Role.ADMIN)
    await add_domain(api, admin, "apps.example.com")
    _, pro = await api.user(plan=Plan.PRO)
    component = await component_id(api, pro)

    for domain in (
        "shop.apps.example.com",
        "apps.example.com",
        "shop.localhost",
        "localhost",
        "203.0.113.7",
        "evil.com\nX: y",
        "a..b.com",
        "-a.com",
        "",
    ):
        error = await refused(api, ADD_DOMAIN, {"domain": domain, "componentId": component}, pro)
        assert (error.code, error.field) == ("BAD_USER_INPUT", "domain"), domain
    assert await Domain.filter(kind=DomainKind.CUSTOM).count() == 0


async def test_custom_domains_are_private_to_their_owner(api: Api) -> None:
    _, admin = await api.user(role=Role.ADMIN)
    await add_domain(api, admin, "apps.example.com")
    _, alice = await api.user(plan=Plan.PRO)
    _, bob = await api.user(plan=Plan.PRO)
    alices_component = await component_id(api, alice)
    bobs_component = await component_id(api, bob)

    error = await refused(
        api, ADD_DOMAIN, {"domain": "alice.example.com", "componentId": bobs_component}, alice
    )
    assert (error.code, error.field) == ("NOT_FOUND", "componentId")
    alices = await add_domain(api, alice, "alice.example.com", alices_component)
    bobs = await add_domain(api, bob, "bob.example.com", bobs_component)

    seen = (await api.gql(DOMAINS, token=alice))["domains"]
    assert {(d["name"], d["kind"]) for d in seen} == {
        ("apps.example.com", "PLATFORM"),
        ("alice.example.com", "CUSTOM"),
    }

    error = await refused(api, REMOVE_DOMAIN, {"id": bobs["id"]}, alice)
    assert (error.code, error.field) == ("NOT_FOUND", "id")
    assert await Domain.exists(name="bob.example.com")
    assert (await api.gql(REMOVE_DOMAIN, {"id": alices["id"]}, alice))["removeDomain"] is True
    seen = (await api.gql(DOMAINS, token=alice))["domains"]
    assert [d["name"] for d in seen] == ["apps.example.com"]


# billing, off without STRIPE_SECRET_KEY

CHECKOUT = "mutation { createCheckoutSession(plan: PRO) { url } }"
UPGRADE_STORAGE = "mutation ($blocks: Int!) { upgradeStorage(blocks: $blocks) { id } }"
APPLY_COUPON = 'mutation { applyCoupon(code: "WELCOME10") { id } }'
CREATE_COUPON = "mutation ($input: CouponInput!) { createCoupon(input: $input) { id code } }"
COUPONS = "{ coupons { id code } }"
VALID_COUPON = {"code": "WELCOME10", "percentOff": 10, "duration": "once"}


def assert_billing_off(error: GraphQLErrors) -> None:
    assert error.code == "NOT_CONFIGURED"
    assert "STRIPE_SECRET_KEY" in str(error)


async def test_billing_operations_answer_not_configured_naming_stripe_secret_key(
    api: Api,
) -> None:
    free_user, free = await api.user()
    _, pro = await api.user(plan=Plan.PRO)
    _, admin = await api.user(role=Role.ADMIN)

    assert_billing_off(await refused(api, CHECKOUT, None, free))
    assert_billing_off(await refused(api, UPGRADE_STORAGE, {"blocks": 2}, pro))
    assert_billing_off(await refused(api, APPLY_COUPON, None, free))
    assert_billing_off(await refused(api, CREATE_COUPON, {"input": VALID_COUPON}, admin))

    assert (await api.gql(COUPONS, token=admin))["coupons"] == []
    assert await Coupon.all().count() == 0
    assert (await User.get(id=free_user.id)).extra_storage_blocks == 0


async def test_billing_input_is_checked_before_billing_is(api: Api) -> None:
    _, free = await api.user()
    _, pro = await api.user(plan=Plan.PRO)
    _, admin = await api.user(role=Role.ADMIN)

    error = await refused(api, UPGRADE_STORAGE, {"blocks": -1}, pro)
    assert (error.code, error.field) == ("BAD_USER_INPUT", "blocks")
    error = await refused(api, UPGRADE_STORAGE, {"blocks": 1}, free)
    assert error.code == "PLAN_LIMIT"

    for coupon, field in (
        ({**VALID_COUPON, "amountOffPence": 500}, "percentOff"),
        ({**VALID_COUPON, "percentOff": 0}, "percentOff"),
        ({**VALID_COUPON, "duration": "repeating"}, "durationInMonths"),
    ):
        error = await refused(api, CREATE_COUPON, {"input": coupon}, admin)
        assert (error.code, error.field) == ("BAD_USER_INPUT", field), coupon
    error = await refused(api, CREATE_COUPON, {"input": VALID_COUPON}, pro)
    assert error.code == "FORBIDDEN"
    error = await refused(api, COUPONS, None, pro)
    assert error.code == "FORBIDDEN"


# the admins' compute operations

SERVERS = "{ servers { id provider name status cpus memoryTotalBytes } }"
VM_STATS = 'query { vmStats(vmId: "local") { vmId samples { time } } }'
ADD_PROXMOX_NODE = "mutation ($input: ProxmoxNodeInput!) { addProxmoxNode(input: $input) { id } }"
REMOVE_PROXMOX_NODE = 'mutation { removeProxmoxNode(id: "1") }'
PROXMOX_NODE = {
    "name": "pve1",
    "apiUrl": "https://pve1.example.com:8006",
    "tokenId": "digi@pve!api",
    "tokenSecret": "00000000-0000-0000-0000-000000000000",
    "node": "pve1",
    "templateVmId": 9000,
}


async def test_servers_lists_the_local_docker_engine_for_admins(api: Api) -> None:
    _, admin = await api.user(role=Role.ADMIN)
    _, token = await api.user()

    servers = (await api.gql(SERVERS, token=admin))["servers"]
    local = next(server for server in servers if server["id"] == "local")
    assert local["provider"] == "local" and local["status"] == "ready"
    assert local["cpus"] >= 1 and local["memoryTotalBytes"] > 0

    error = await refused(api, SERVERS, None, token)
    assert error.code == "FORBIDDEN"


async def test_proxmox_and_vm_stats_validate_then_answer_not_configured(api: Api) -> None:
    _, admin = await api.user(role=Role.ADMIN)

    error = await refused(api, VM_STATS, None, admin)
    assert error.code == "NOT_CONFIGURED"

    for node, field in (
        ({**PROXMOX_NODE, "apiUrl": "http://pve1.example.com:8006"}, "apiUrl"),
        ({**PROXMOX_NODE, "tokenId": "digi"}, "tokenId"),
        ({**PROXMOX_NODE, "tokenId": "digi@pve"}, "tokenId"),
        ({**PROXMOX_NODE, "name": "pve 1; rm"}, "name"),
    ):
        error = await refused(api, ADD_PROXMOX_NODE, {"input": node}, admin)
        assert (error.code, error.field) == ("BAD_USER_INPUT", field), node
    error = await refused(api, ADD_PROXMOX_NODE, {"input": PROXMOX_NODE}, admin)
    assert error.code == "NOT_CONFIGURED"

    error = await refused(api, REMOVE_PROXMOX_NODE, None, admin)
    assert error.code == "NOT_CONFIGURED"
