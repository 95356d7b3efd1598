"""applyStack through the GraphQL API: create from a digi.toml, re-apply, change, prune,
references checked before anything changes, ownership, audit."""

from __future__ import annotations

from typing import Any

import pytest

from digi_core.models import AuditOutcome, Role, Service
from tests.core.api.conftest import Api, GraphQLErrors

APPLY_STACK = """
    mutation ($toml: String!, $serviceId: ID, $prune: Boolean) {
        applyStack(toml: $toml, serviceId: $serviceId, prune: $prune) {
            created updated removed unchanged
            service {
                id name slug
                components { name type image repoUrl branch port healthcheckPath isPrimary }
                envVars { key value component }
            }
        }
    }
"""
SET_ENV_VARS = """
    mutation ($serviceId: ID!, $vars: [EnvVarInput!]!, $component: String) {
        setEnvVars(serviceId: $serviceId, vars: $vars, component: $component) { key }
    }
"""
ONE_SERVICE = """
    query ($id: ID!) {
        service(id: $id) {
            name components { name type port } envVars { key value component }
        }
    }
"""

SHOP = """\
name = "shop"

[services.web]
type = "docker"
image = "nginx:1.27"
port = 8080
healthcheck = "/health"

[services.web.env]
DATABASE_URL = "${{ db.DATABASE_URL }}"
CACHE_URL = "${{cache.REDIS_URL}}"
GREETING = "hello"

[services.worker]
type = "github"
repo = "https://github.com/acme/shop"
start = "npm run worker"

[services.db]
type = "postgres"

[services.cache]
type = "redis"
"""


async def apply(
    api: Api,
    token: str,
    toml: str,
    service_id: str | None = None,
    *,
    prune: bool | None = None,
) -> dict[str, Any]:
    variables: dict[str, Any] = {"toml": toml, "serviceId": service_id}
    if prune is not None:
        variables["prune"] = prune
    return (await api.gql(APPLY_STACK, variables, token))["applyStack"]


async def refused(
    api: Api, token: str, toml: str, service_id: str | None = None, *, prune: bool | None = None
) -> GraphQLErrors:
    with pytest.raises(GraphQLErrors) as caught:
        await apply(api, token, toml, service_id, prune=prune)
    return caught.value


def by_name(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {component["name"]: component for component in service["components"]}


def env_of(service: dict[str, Any]) -> dict[tuple[str | None, str], str]:
    return {(row["component"], row["key"]): row["value"] for row in service["envVars"]}


async def test_a_stack_creates_its_service(api: Api) -> None:
    _, token = await api.user()
    result = await apply(api, token, SHOP)

    assert result["created"] == ["web", "worker", "db", "cache"]
    assert result["updated"] == result["removed"] == result["unchanged"] == []
    service = result["service"]
    assert service["name"] == "shop" and service["slug"].startswith("shop-")
    components = by_name(service)
    assert components["web"] == {
        "name": "web",
        "type": "DOCKER",
        "image": "nginx:1.27",
        "repoUrl": None,
        "branch": None,
        "port": 8080,
        "healthcheckPath": "/health",
        "isPrimary": True,  # the first app in the file
    }
    assert components["worker"]["branch"] == "main" and not components["worker"]["isPrimary"]
    assert components["db"]["type"] == "POSTGRES" and components["cache"]["type"] == "REDIS"
    # The file's env, per component, shown to the owner with references unresolved.
    assert env_of(service) == {
        ("web", "DATABASE_URL"): "${{ db.DATABASE_URL }}",
        ("web", "CACHE_URL"): "${{cache.REDIS_URL}}",
        ("web", "GREETING"): "hello",
    }


async def test_applying_the_same_file_again_changes_nothing(api: Api) -> None:
    _, token = await api.user()
    created = (await apply(api, token, SHOP))["service"]

    again = await apply(api, token, SHOP, created["id"])

    assert again["unchanged"] == ["web", "worker", "db", "cache"]
    assert again["created"] == again["updated"] == again["removed"] == []
    assert again["service"] == created


async def test_a_changed_port_or_env_value_updates_that_component_only(api: Api) -> None:
    _, token = await api.user()
    service_id = (await apply(api, token, SHOP))["service"]["id"]

    changed = await apply(api, token, SHOP.replace("port = 8080", "port = 9090"), service_id)
    assert changed["updated"] == ["web"]
    assert changed["unchanged"] == ["worker", "db", "cache"]
    assert by_name(changed["service"])["web"]["port"] == 9090

    text = SHOP.replace("port = 8080", "port = 9090").replace('"hello"', '"bonjour"')
    changed = await apply(api, token, text, service_id)
    assert changed["updated"] == ["web"]
    assert env_of(changed["service"])[("web", "GREETING")] == "bonjour"

    added = await apply(api, token, text + '\n[services.search]\ntype = "redis"\n', service_id)
    assert added["created"] == ["search"] and added["updated"] == []


async def test_prune_removes_what_the_file_leaves_out_and_only_then(api: Api) -> None:
    _, token = await api.user()
    service_id = (await apply(api, token, SHOP))["service"]["id"]
    without_worker = SHOP.replace(
        '[services.worker]\ntype = "github"\nrepo = "https://github.com/acme/shop"\n'
        'start = "npm run worker"\n',
        "",
    )
    assert "worker" not in without_worker

    kept = await apply(api, token, without_worker, service_id)
    assert kept["removed"] == [] and kept["unchanged"] == ["web", "db", "cache"]
    assert "worker" in by_name(kept["service"])

    kept = await apply(api, token, without_worker, service_id, prune=False)
    assert kept["removed"] == [] and "worker" in by_name(kept["service"])

    pruned = await apply(api, token, without_worker, service_id, prune=True)
    assert pruned["removed"] == ["worker"] and pruned["unchanged"] == ["web", "db", "cache"]
    assert set(by_name(pruned["service"])) == {"web", "db", "cache"}


async def test_env_set_outside_the_file_is_kept_and_counts_for_references(api: Api) -> None:
    _, token = await api.user()
    service_id = (await apply(api, token, SHOP))["service"]["id"]
    await api.gql(
        SET_ENV_VARS,
        {
            "serviceId": service_id,
            "vars": [{"key": "API_KEY", "value": "s3cret"}],
            "component": "db",
        },
        token,
    )
    text = SHOP.replace('GREETING = "hello"', 'KEY = "${{db.API_KEY}}"')

    result = await apply(api, token, text, service_id)

    assert result["updated"] == ["web"]
    env = env_of(result["service"])
    assert env[("db", "API_KEY")] == "s3cret"
    assert env[("web", "GREETING")] == "hello"  # the file sets, it does not delete
    assert env[("web", "KEY")] == "${{db.API_KEY}}"


async def test_the_service_takes_the_files_name(api: Api) -> None:
    _, token = await api.user()
    created = (await apply(api, token, SHOP))["service"]
    renamed = await apply(
        api, token, SHOP.replace('name = "shop"', 'name = "store"'), created["id"]
    )
    assert renamed["service"]["name"] == "store"
    assert renamed["service"]["slug"] == created["slug"]  # the URLs stay
    assert renamed["unchanged"] == ["web", "worker", "db", "cache"]


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "${{cache.REDIS_URL}}",
            "${{queue.REDIS_URL}}",
            "web's CACHE_URL refers to ${{queue.REDIS_URL}}, but the service has no component "
            "queue",
        ),
        (
            "${{cache.REDIS_URL}}",
            "${{cache.REDIS_PASSWORD}}",
            "web's CACHE_URL refers to ${{cache.REDIS_PASSWORD}}, but cache has no variable "
            "REDIS_PASSWORD; it has: REDIS_URL",
        ),
        (
            "${{cache.REDIS_URL}}",
            "${{worker.PORT}}",  # the worker declares no port
            "but worker has no variable PORT; it has: none",
        ),
    ],
)
async def test_an_unknown_reference_is_refused_and_nothing_changes(
    api: Api, old: str, new: str, says: str
) -> None:
    _, token = await api.user()
    created = (await apply(api, token, SHOP))["service"]
    text = SHOP.replace(old, new).replace("port = 8080", "port = 9090")

    error = await refused(api, token, text, created["id"])
    assert (error.code, error.field) == ("BAD_USER_INPUT", "env")
    assert says in str(error)
    service = (await api.gql(ONE_SERVICE, {"id": created["id"]}, token))["service"]
    assert by_name(service)["web"]["port"] == 8080
    assert env_of(service) == env_of(created)

    # Creating a service from such a file makes nothing either.
    error = await refused(api, token, text.replace('"shop"', '"other"'))
    assert error.code == "BAD_USER_INPUT" and says in str(error)
    assert await Service.filter(name="other").count() == 0


async def test_references_to_a_component_the_file_leaves_out(api: Api) -> None:
    _, token = await api.user()
    service_id = (await apply(api, token, SHOP))["service"]["id"]
    without_cache = SHOP.replace('[services.cache]\ntype = "redis"\n', "")

    # Kept without prune, so still there to refer to.
    kept = await apply(api, token, without_cache, service_id)
    assert "cache" in by_name(kept["service"])

    error = await refused(api, token, without_cache, service_id, prune=True)
    assert error.code == "BAD_USER_INPUT"
    assert "refers to ${{cache.REDIS_URL}}, but the service has no component cache" in str(error)


async def test_a_bad_file_is_refused_with_its_lines(api: Api) -> None:
    _, token = await api.user()
    error = await refused(api, token, 'name = "shop"\n[services.web]\ntype = "docker"\nport = 0\n')
    assert (error.code, error.field) == ("BAD_USER_INPUT", "toml")
    assert str(error) == (
        "digi.toml:4: services.web.port: Port 0 is not allowed: use a number from 1 to 65535."
    )

    error = await refused(api, token, 'name = "shop"\n[services.web\n')
    assert str(error).startswith("digi.toml:2: invalid TOML: ")

    error = await refused(api, token, SHOP.replace('"nginx:1.27"', '"nginx;rm -rf /"'))
    assert str(error).startswith("digi.toml:5: services.web.image: Image 'nginx;rm -rf /'")
    assert await Service.all().count() == 0


async def test_changing_a_components_type_is_a_conflict(api: Api) -> None:
    _, token = await api.user()
    created = (await apply(api, token, SHOP))["service"]
    text = SHOP.replace('[services.cache]\ntype = "redis"', '[services.cache]\ntype = "postgres"')
    text = text.replace("${{cache.REDIS_URL}}", "${{cache.DATABASE_URL}}")

    error = await refused(api, token, text, created["id"])

    assert error.code == "CONFLICT" and "cache is a redis component" in str(error)
    service = (await api.gql(ONE_SERVICE, {"id": created["id"]}, token))["service"]
    assert by_name(service)["cache"]["type"] == "REDIS"


async def test_another_users_service_is_not_found_and_untouched(api: Api) -> None:
    _, owner = await api.user()
    _, stranger = await api.user()
    created = (await apply(api, owner, SHOP))["service"]

    for text in (SHOP.replace('"shop"', '"stolen"'), "not toml at all ["):
        error = await refused(api, stranger, text, created["id"])
        assert (error.code, error.field) == ("NOT_FOUND", "id")
        assert created["slug"] not in str(error)

    service = (await api.gql(ONE_SERVICE, {"id": created["id"]}, owner))["service"]
    assert service["name"] == "shop"


async def test_apply_stack_is_audited(api: Api) -> None:
    user, token = await api.user()
    service_id = (await apply(api, token, SHOP))["service"]["id"]
    await refused(api, token, "name = ", service_id)

    _, admin = await api.user(role=Role.ADMIN)
    log = (
        await api.gql(
            'query { auditLogs(action: "applyStack") { items { outcome actorEmail targetType '
            "targetId metadata } } }",
            token=admin,
        )
    )["auditLogs"]["items"]
    failure, success = log
    assert success["outcome"] == AuditOutcome.SUCCESS.name
    assert (success["targetType"], success["targetId"]) == ("service", service_id)
    assert success["actorEmail"] == user.email
    assert success["metadata"]["created"] == ["web", "worker", "db", "cache"]
    assert failure["outcome"] == AuditOutcome.FAILURE.name
    assert failure["targetId"] == service_id
    assert failure["metadata"] == {"code": "BAD_USER_INPUT"}
