"""Every operation of the schema, run as an anonymous caller, as another user and as a
non-admin: UNAUTHENTICATED, NOT_FOUND or FORBIDDEN, and nothing of the owner's leaks.

An operation added to the schema without a case here fails `test_every_operation_has_a_case`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from digi_core.api.schema import make_schema
from digi_core.models import Coupon, Deployment, Domain, DomainKind, Plan, Role
from tests.core.api.conftest import Api


@dataclass
class World:
    """The owner's things that the other callers must not reach."""

    owner_token: str
    other_token: str
    admin_token: str
    service_id: str
    slug: str
    secret_value: str
    token_id: str
    domain_id: str
    job_id: str
    deployment_id: str
    owner_email: str
    owner_id: str
    coupon_id: str


@dataclass
class Case:
    document: str
    variables: Callable[[World], dict[str, Any]] = lambda world: {}
    # public: anyone may call it; user: signed-in callers; admin: admins only
    access: str = "user"
    # True when it acts on one of the owner's things (another user must get NOT_FOUND)
    owned: bool = False


SERVICE_FIELDS = "id slug name components { name hostname } envVars { key value }"

QUERIES: dict[str, Case] = {
    "version": Case("{ version }", access="public"),
    "me": Case("{ me { id email } }"),
    "apiTokens": Case("{ apiTokens { id name prefix } }"),
    "services": Case(f"{{ services {{ totalCount items {{ {SERVICE_FIELDS} }} }} }}"),
    "service": Case(
        f"query($id: ID!) {{ service(id: $id) {{ {SERVICE_FIELDS} }} }}",
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "deploymentLog": Case(
        "query($id: ID!) { deploymentLog(deploymentId: $id) { lines { line } } }",
        lambda w: {"id": w.deployment_id},
        owned=True,
    ),
    "users": Case("{ users { totalCount items { id email } } }", access="admin"),
    "auditLogs": Case("{ auditLogs { totalCount items { action actorEmail } } }", access="admin"),
    "platformCounts": Case("{ platformCounts { users services } }", access="admin"),
    "recentDeployments": Case(
        "{ recentDeployments { totalCount items { ownerEmail deployment { id } } } }",
        access="admin",
    ),
    "servers": Case("{ servers { id status } }", access="admin"),
    "vmStats": Case('{ vmStats(vmId: "local") { vmId } }', access="admin"),
    "domains": Case("{ domains { id name verificationRecord } }"),
    "coupons": Case("{ coupons { id code } }", access="admin"),
}

MUTATIONS: dict[str, Case] = {
    "signUp": Case(
        'mutation($e: String!) { signUp(email: $e, password: "long enough password") { id } }',
        lambda w: {"e": f"new-{uuid.uuid4().hex[:8]}@example.com"},
        access="public",
    ),
    "signIn": Case(
        'mutation($e: String!) { signIn(email: $e, password: "wrong password!") { token } }',
        lambda w: {"e": w.owner_email},
        access="public",
    ),
    "signOut": Case("mutation { signOut }"),
    "verifyEmail": Case('mutation { verifyEmail(token: "not-a-token") }', access="public"),
    "resendVerification": Case("mutation { resendVerification }"),
    "requestPasswordReset": Case(
        'mutation { requestPasswordReset(email: "nobody@example.com") }', access="public"
    ),
    "resetPassword": Case(
        'mutation { resetPassword(token: "not-a-token", newPassword: "another long one") }',
        access="public",
    ),
    "generateApiToken": Case('mutation { generateApiToken(name: "t") { token } }'),
    "revokeApiToken": Case(
        "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
        lambda w: {"id": w.token_id},
        owned=True,
    ),
    "createService": Case(
        'mutation { createService(name: "mine", components: [{name: "web", type: DOCKER, '
        'image: "nginx"}]) { id } }'
    ),
    "updateService": Case(
        'mutation($id: ID!) { updateService(id: $id, name: "stolen") { id slug } }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "applyStack": Case(
        "mutation($id: ID!, $toml: String!) { applyStack(toml: $toml, serviceId: $id, "
        "prune: true) { removed service { slug } } }",
        lambda w: {
            "id": w.service_id,
            "toml": 'name = "stolen"\n[services.web]\ntype = "docker"\nimage = "nginx"\n',
        },
        owned=True,
    ),
    "deleteService": Case(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "deployService": Case(
        "mutation($id: ID!) { deployService(serviceId: $id) { jobId } }",
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "rollbackDeployment": Case(
        "mutation($id: ID!) { rollbackDeployment(deploymentId: $id) { jobId } }",
        lambda w: {"id": w.deployment_id},
        owned=True,
    ),
    "cancelDeployment": Case(
        "mutation($job: String!) { cancelDeployment(jobId: $job) { jobId } }",
        lambda w: {"job": w.job_id},
        owned=True,
    ),
    "stopContainer": Case(
        'mutation($id: ID!) { stopContainer(serviceId: $id, containerId: "web") }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "restartContainer": Case(
        'mutation($id: ID!) { restartContainer(serviceId: $id, containerId: "web") }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "setEnvVars": Case(
        'mutation($id: ID!) { setEnvVars(serviceId: $id, vars: [{key: "X", value: "y"}]) '
        "{ key value } }",
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "deleteEnvVars": Case(
        'mutation($id: ID!) { deleteEnvVars(serviceId: $id, keys: ["SECRET"]) }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "suspendUser": Case(
        "mutation($id: ID!) { suspendUser(id: $id) { id } }",
        lambda w: {"id": w.owner_id},
        access="admin",
    ),
    "unsuspendUser": Case(
        "mutation($id: ID!) { unsuspendUser(id: $id) { id } }",
        lambda w: {"id": w.owner_id},
        access="admin",
    ),
    "setUserPlan": Case(
        "mutation($id: ID!) { setUserPlan(id: $id, plan: PRO) { id plan } }",
        lambda w: {"id": w.owner_id},
        access="admin",
    ),
    "deleteUser": Case(
        "mutation($id: ID!) { deleteUser(id: $id) }", lambda w: {"id": w.owner_id}, access="admin"
    ),
    "addProxmoxNode": Case(
        'mutation { addProxmoxNode(input: {name: "pve1", apiUrl: "https://pve:8006", '
        'tokenId: "root@pam!digi", tokenSecret: "s", node: "pve1", templateVmId: 9000}) '
        "{ id } }",
        access="admin",
    ),
    "removeProxmoxNode": Case('mutation { removeProxmoxNode(id: "1") }', access="admin"),
    "addDomain": Case('mutation { addDomain(domain: "apps.example.org") { id } }', access="admin"),
    "verifyDomain": Case(
        "mutation($id: ID!) { verifyDomain(id: $id) { id verifiedAt } }",
        lambda w: {"id": w.domain_id},
        owned=True,
    ),
    "removeDomain": Case(
        "mutation($id: ID!) { removeDomain(id: $id) }", lambda w: {"id": w.domain_id}, owned=True
    ),
    "setDomainDefault": Case(
        "mutation($id: ID!) { setDomainDefault(id: $id) { id } }",
        lambda w: {"id": w.domain_id},
        access="admin",
    ),
    "createCheckoutSession": Case("mutation { createCheckoutSession(plan: PRO) { url } }"),
    "upgradeStorage": Case("mutation { upgradeStorage(blocks: 1) { id } }"),
    "createCoupon": Case(
        'mutation { createCoupon(input: {code: "SAVE10", percentOff: 10}) { id } }',
        access="admin",
    ),
    "deactivateCoupon": Case(
        "mutation($id: ID!) { deactivateCoupon(id: $id) { id } }",
        lambda w: {"id": w.coupon_id},
        access="admin",
    ),
    "deleteCoupon": Case(
        "mutation($id: ID!) { deleteCoupon(id: $id) }",
        lambda w: {"id": w.coupon_id},
        access="admin",
    ),
    "applyCoupon": Case('mutation { applyCoupon(code: "SAVE10") { id } }'),
}

SUBSCRIPTIONS: dict[str, Case] = {
    "deploymentStatus": Case(
        "subscription($job: String!) { deploymentStatus(jobId: $job) { status message } }",
        lambda w: {"job": w.job_id},
        owned=True,
    ),
    "containerLogs": Case(
        'subscription($id: ID!) { containerLogs(serviceId: $id, containerId: "web") { line } }',
        lambda w: {"id": w.service_id},
        owned=True,
    ),
    "deploymentActivity": Case(
        "subscription { deploymentActivity { ownerEmail deployment { id } } }", access="admin"
    ),
}


def test_every_operation_has_a_case() -> None:
    schema = make_schema()._schema
    for type_name, cases in (
        ("Query", QUERIES),
        ("Mutation", MUTATIONS),
        ("Subscription", SUBSCRIPTIONS),
    ):
        operations = set(schema.get_type(type_name).fields)  # type: ignore[union-attr]
        assert operations == set(cases), f"{type_name}: add a case for {operations - set(cases)}"


async def make_world(api: Api) -> World:
    owner, owner_token = await api.user("owner@example.com", plan=Plan.PRO)
    _, other_token = await api.user("other@example.com", plan=Plan.PRO)
    _, admin_token = await api.user("root@example.com", role=Role.ADMIN)
    created = await api.gql(
        'mutation { createService(name: "shop", components: [{name: "web", type: DOCKER, '
        'image: "nginx", port: 80, env: [{key: "SECRET", value: "owner-secret-value"}]}]) '
        "{ id slug components { id } } }",
        token=owner_token,
    )
    service = created["createService"]
    token = await api.gql(
        'mutation { generateApiToken(name: "ci") { apiToken { id } } }', token=owner_token
    )
    domain = await api.gql(
        'mutation($c: ID!) { addDomain(domain: "shop.owner-example.com", componentId: $c) { id } }',
        {"c": service["components"][0]["id"]},
        token=owner_token,
    )
    job_id = f"job-{uuid.uuid4().hex}"
    deployment = await Deployment.create(
        service_id=int(service["id"]),
        component_id=int(service["components"][0]["id"]),
        job_id=job_id,
        message="owner's deployment",
    )
    coupon = await Coupon.create(code="OWNERS", percent_off=10)
    return World(
        owner_token=owner_token,
        other_token=other_token,
        admin_token=admin_token,
        service_id=service["id"],
        slug=service["slug"],
        secret_value="owner-secret-value",
        token_id=token["generateApiToken"]["apiToken"]["id"],
        domain_id=domain["addDomain"]["id"],
        job_id=job_id,
        deployment_id=str(deployment.id),
        owner_email="owner@example.com",
        owner_id=str(owner.id),
        coupon_id=str(coupon.id),
    )


def codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors") or []]


def assert_nothing_of_the_owner(body: dict[str, Any], world: World) -> None:
    text = json.dumps(body)
    for secret in (world.slug, world.secret_value, world.owner_email, "owner's deployment"):
        assert secret not in text, f"{secret!r} leaked: {text[:300]}"


@pytest.mark.parametrize("name", sorted(set(QUERIES) | set(MUTATIONS)), ids=lambda name: name)
async def test_queries_and_mutations(api: Api, name: str) -> None:
    case = QUERIES.get(name) or MUTATIONS[name]
    world = await make_world(api)
    variables = case.variables(world)

    _, anonymous = await api.post(case.document, variables)
    if case.access == "public":
        assert "UNAUTHENTICATED" not in codes(anonymous) or name == "signIn"
    else:
        assert codes(anonymous) == ["UNAUTHENTICATED"], anonymous
        assert anonymous["data"] is None
    assert_nothing_of_the_owner(anonymous, world)

    _, as_other = await api.post(case.document, variables, world.other_token)
    if case.access == "admin":
        assert codes(as_other) == ["FORBIDDEN"], as_other
    elif case.owned:
        assert codes(as_other) == ["NOT_FOUND"], as_other
    assert_nothing_of_the_owner(as_other, world)

    # The owner's things are untouched by what the others tried.
    service = await api.gql(
        "query($id: ID!) { service(id: $id) { slug name envVars { value } } }",
        {"id": world.service_id},
        token=world.owner_token,
    )
    assert service["service"]["slug"] == world.slug
    assert service["service"]["name"] == "shop"
    assert service["service"]["envVars"] == [{"value": world.secret_value}]
    assert await Domain.filter(kind=DomainKind.CUSTOM).count() == 1


@pytest.mark.parametrize("name", sorted(SUBSCRIPTIONS), ids=lambda name: name)
async def test_subscriptions(api: Api, name: str) -> None:
    case = SUBSCRIPTIONS[name]
    world = await make_world(api)
    variables = case.variables(world)

    # Anonymous: refused at connection_init, before any subscription.
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {}})
    message = await websocket.receive(timeout=10)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert websocket.close_code == 4403
    await websocket.close()

    # Another user: connected, but the owner's job or container is not found.
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": world.other_token}})
    assert (await websocket.receive_json(timeout=10))["type"] == "connection_ack"
    await websocket.send_json(
        {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": case.document, "variables": variables},
        }
    )
    answer = await websocket.receive_json(timeout=10)
    # An error before the first event is an "error" frame, one raised by the resolver a "next".
    errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
    # Another user's things are not found; an admin's view is forbidden to every user.
    expected = "FORBIDDEN" if case.access == "admin" else "NOT_FOUND"
    assert [error["extensions"]["code"] for error in errors] == [expected], answer
    assert_nothing_of_the_owner(answer, world)
    await websocket.close()
