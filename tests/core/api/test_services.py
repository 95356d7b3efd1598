"""Services through the GraphQL API: create, list, change, delete, env vars, audit and errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from digi_core import services
from digi_core.crypto import SecretBox
from digi_core.models import AuditOutcome, ComponentType, EnvVar, Role, Service
from tests.conftest import TEST_SECRET
from tests.core.api.conftest import Api, GraphQLErrors

SERVICE_FIELDS = """
    id name slug status url
    components { name type image repoUrl branch port subdomain hostname url isPrimary }
"""
CREATE_SERVICE = f"""
    mutation ($name: String!, $components: [ComponentInput!]!) {{
        createService(name: $name, components: $components) {{ {SERVICE_FIELDS} }}
    }}
"""
UPDATE_SERVICE = f"""
    mutation ($id: ID!, $name: String, $components: [ComponentInput!],
              $removeComponents: [String!]) {{
        updateService(id: $id, name: $name, components: $components,
                      removeComponents: $removeComponents) {{ {SERVICE_FIELDS} }}
    }}
"""
DELETE_SERVICE = """
    mutation ($id: ID!, $confirm: String!) { deleteService(id: $id, confirm: $confirm) { removed } }
"""
LIST_SERVICES = f"""
    query ($offset: Int, $limit: Int) {{
        services(offset: $offset, limit: $limit) {{
            totalCount offset limit items {{ {SERVICE_FIELDS} }}
        }}
    }}
"""
ONE_SERVICE = f"query ($id: ID!) {{ service(id: $id) {{ {SERVICE_FIELDS} }} }}"
SERVICE_ENV_VARS = "query ($id: ID!) { service(id: $id) { envVars { key value component } } }"
SET_ENV_VARS = """
    mutation ($serviceId: ID!, $vars: [EnvVarInput!]!, $component: String) {
        setEnvVars(serviceId: $serviceId, vars: $vars, component: $component) {
            key value component
        }
    }
"""
DELETE_ENV_VARS = """
    mutation ($serviceId: ID!, $keys: [String!]!, $component: String) {
        deleteEnvVars(serviceId: $serviceId, keys: $keys, component: $component)
    }
"""

WEB = {"name": "web", "type": "DOCKER", "image": "nginx:1.25-alpine", "port": 80}
DB = {"name": "db", "type": "POSTGRES"}
CACHE = {"name": "cache", "type": "REDIS"}
WORKER = {
    "name": "worker",
    "type": "GITHUB",
    "repoUrl": "https://github.com/octocat/hello-world",
    "branch": "main",
}
SLUG = re.compile(r"shop-[a-z0-9]{12}")


async def create_service(
    api: Api, token: str, name: str = "shop", components: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    variables = {"name": name, "components": components or [WEB]}
    return (await api.gql(CREATE_SERVICE, variables, token))["createService"]


async def refused(
    api: Api, query: str, variables: dict[str, Any], token: str | None
) -> GraphQLErrors:
    with pytest.raises(GraphQLErrors) as caught:
        await api.gql(query, variables, token)
    return caught.value


def by_name(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {component["name"]: component for component in service["components"]}


# create, list, read


async def test_create_service_names_its_slug_and_component_hostnames(api: Api) -> None:
    _, token = await api.user()
    service = await create_service(api, token, components=[WEB, DB, CACHE, WORKER])

    slug = service["slug"]
    assert SLUG.fullmatch(slug)
    assert service["name"] == "shop" and service["status"] == "CREATED"
    # Through the Caddy Digi runs on the embedded default (HTTPS in production).
    assert service["url"] == f"http://{slug}.localhost:8080"
    components = by_name(service)
    assert service["components"][0]["name"] == "web"  # the primary comes first
    assert components["web"]["isPrimary"] is True
    assert components["web"]["subdomain"] == slug
    assert components["web"]["url"] == f"http://{slug}.localhost:8080"
    assert components["web"]["image"] == "nginx:1.25-alpine" and components["web"]["port"] == 80
    for name in ("db", "cache", "worker"):
        assert components[name]["isPrimary"] is False
        assert re.fullmatch(rf"{slug}-{name}-[0-9a-f]{{4}}", components[name]["subdomain"])
        assert components[name]["hostname"] == f"{components[name]['subdomain']}.localhost"
    assert components["worker"]["repoUrl"] == "https://github.com/octocat/hello-world"
    assert components["worker"]["branch"] == "main"
    assert components["db"]["type"] == "POSTGRES" and components["cache"]["type"] == "REDIS"


async def test_same_named_services_get_distinct_slugs_and_list_newest_first(api: Api) -> None:
    _, token = await api.user()
    _, stranger = await api.user()
    created = [await create_service(api, token) for _ in range(3)]
    theirs = await create_service(api, stranger)
    assert len({service["slug"] for service in created}) == 3
    assert all(SLUG.fullmatch(service["slug"]) for service in created)

    page = (await api.gql(LIST_SERVICES, {}, token))["services"]
    assert page["totalCount"] == 3 and page["offset"] == 0 and page["limit"] == 20
    assert page["items"] == created[::-1]

    page = (await api.gql(LIST_SERVICES, {"offset": 1, "limit": 1}, token))["services"]
    assert page["totalCount"] == 3 and page["offset"] == 1 and page["limit"] == 1
    assert page["items"] == [created[1]]

    one = (await api.gql(ONE_SERVICE, {"id": created[0]["id"]}, token))["service"]
    assert one == created[0]
    error = await refused(api, ONE_SERVICE, {"id": theirs["id"]}, token)
    assert (error.code, error.field) == ("NOT_FOUND", "id")


# validation


def with_component(**overrides: Any) -> list[dict[str, Any]]:
    return [{**WEB, **overrides}]


INVALID_SERVICES = [
    ("api", [WEB], "name"),
    ("admin", [WEB], "name"),
    ("www", [WEB], "name"),
    ("app", [WEB], "name"),
    ("My_Shop", [WEB], "name"),
    ("shop!", [WEB], "name"),
    ("a" * 25, [WEB], "name"),
    ("shop", [WEB, {**DB, "name": "web"}], "components"),
    ("shop", with_component(image=None), "image"),
    ("shop", with_component(image="--privileged"), "image"),
    ("shop", with_component(image="nginx;rm -rf /"), "image"),
    ("shop", with_component(image="$(reboot)"), "image"),
    ("shop", [{**WORKER, "repoUrl": "ext::sh -c touch% /tmp/pwned"}], "repoUrl"),
    ("shop", [{**WORKER, "repoUrl": "-uhelp"}], "repoUrl"),
    ("shop", [{**WORKER, "repoUrl": "file:///etc"}], "repoUrl"),
    ("shop", [{**WORKER, "branch": "-x"}], "branch"),
    ("shop", [{**WORKER, "branch": "a..b"}], "branch"),
    ("shop", with_component(env=[{"key": "1ABC", "value": "x"}]), "key"),
    ("shop", with_component(env=[{"key": "DIGI_X", "value": "x"}]), "key"),
    ("shop", with_component(env=[{"key": "A-B", "value": "x"}]), "key"),
    ("shop", with_component(env=[{"key": "A", "value": "a\x00b"}]), "value"),
    ("shop", with_component(port=0), "port"),
    ("shop", with_component(port=70000), "port"),
    ("shop", with_component(healthcheckPath="healthz"), "healthcheckPath"),
]


async def test_create_service_refuses_invalid_input_naming_the_field_and_creates_nothing(
    api: Api,
) -> None:
    _, token = await api.user()
    for name, components, field in INVALID_SERVICES:
        variables = {"name": name, "components": components}
        error = await refused(api, CREATE_SERVICE, variables, token)
        assert (error.code, error.field) == ("BAD_USER_INPUT", field), variables
    assert (await api.gql(LIST_SERVICES, {}, token))["services"]["totalCount"] == 0
    assert await Service.all().count() == 0


# update


async def test_rename_keeps_slug_and_urls(api: Api) -> None:
    _, token = await api.user()
    service = await create_service(api, token, components=[WEB, DB])
    renamed = (await api.gql(UPDATE_SERVICE, {"id": service["id"], "name": "store"}, token))[
        "updateService"
    ]
    assert renamed["name"] == "store"
    assert renamed["slug"] == service["slug"] and renamed["url"] == service["url"]
    assert renamed["components"] == service["components"]


async def test_update_adds_a_component_and_changes_an_image(api: Api) -> None:
    _, token = await api.user()
    service = await create_service(api, token)
    variables = {"id": service["id"], "components": [{**WEB, "image": "nginx:1.27"}, CACHE]}
    updated = by_name((await api.gql(UPDATE_SERVICE, variables, token))["updateService"])
    assert updated["web"]["image"] == "nginx:1.27"
    assert updated["web"]["subdomain"] == service["slug"] and updated["web"]["isPrimary"]
    assert updated["cache"]["type"] == "REDIS" and not updated["cache"]["isPrimary"]
    assert re.fullmatch(rf"{service['slug']}-cache-[0-9a-f]{{4}}", updated["cache"]["subdomain"])


async def test_update_refuses_type_change_removing_everything_and_unknown_components(
    api: Api,
) -> None:
    _, token = await api.user()
    service = await create_service(api, token)
    service_id = service["id"]

    error = await refused(
        api, UPDATE_SERVICE, {"id": service_id, "components": [{**DB, "name": "web"}]}, token
    )
    assert (error.code, error.field) == ("CONFLICT", "type")

    error = await refused(
        api, UPDATE_SERVICE, {"id": service_id, "removeComponents": ["web"]}, token
    )
    assert (error.code, error.field) == ("BAD_USER_INPUT", "removeComponents")

    error = await refused(api, UPDATE_SERVICE, {"id": service_id, "removeComponents": ["x"]}, token)
    assert (error.code, error.field) == ("NOT_FOUND", "removeComponents")

    # Each refusal rolled back: the service is as it was.
    unchanged = (await api.gql(ONE_SERVICE, {"id": service_id}, token))["service"]
    assert unchanged == service


# delete


async def test_delete_service_needs_its_name_as_confirmation(api: Api) -> None:
    _, token = await api.user()
    service = await create_service(api, token)
    for confirm in ("", "Shop", "store"):
        error = await refused(api, DELETE_SERVICE, {"id": service["id"], "confirm": confirm}, token)
        assert (error.code, error.field) == ("BAD_USER_INPUT", "confirm")
    assert (await api.gql(ONE_SERVICE, {"id": service["id"]}, token))["service"]["id"]


async def test_delete_service_lists_what_went_and_never_reuses_the_slug(api: Api) -> None:
    _, token = await api.user()
    service = await create_service(api, token, components=[WEB, DB])
    removed = (await api.gql(DELETE_SERVICE, {"id": service["id"], "confirm": "shop"}, token))[
        "deleteService"
    ]["removed"]
    assert f"service shop ({service['slug']})" in removed
    assert "component web (docker)" in removed and "component db (postgres)" in removed
    assert "data volume of db" in removed

    page = (await api.gql(LIST_SERVICES, {}, token))["services"]
    assert page["totalCount"] == 0 and page["items"] == []
    error = await refused(api, ONE_SERVICE, {"id": service["id"]}, token)
    assert error.code == "NOT_FOUND"

    assert await Service.filter(slug=service["slug"]).count() == 1
    again = await create_service(api, token)
    assert again["slug"] != service["slug"]


# env vars


async def test_env_vars_are_set_per_scope_shown_to_the_owner_and_encrypted_at_rest(
    api: Api,
) -> None:
    _, token = await api.user()
    service = await create_service(api, token, components=[WEB, DB])
    service_id = service["id"]

    shared = await api.gql(
        SET_ENV_VARS, {"serviceId": service_id, "vars": [{"key": "MODE", "value": "live"}]}, token
    )
    assert shared["setEnvVars"] == [{"key": "MODE", "value": "live", "component": None}]
    variables = {
        "serviceId": service_id,
        "vars": [{"key": "PASSWORD", "value": "s3cret value"}, {"key": "A", "value": "1"}],
        "component": "db",
    }
    own = (await api.gql(SET_ENV_VARS, variables, token))["setEnvVars"]
    assert {(v["key"], v["value"], v["component"]) for v in own} == {
        ("PASSWORD", "s3cret value", "db"),
        ("A", "1", "db"),
    }

    seen = (await api.gql(SERVICE_ENV_VARS, {"id": service_id}, token))["service"]["envVars"]
    assert seen == [
        {"key": "MODE", "value": "live", "component": None},
        {"key": "A", "value": "1", "component": "db"},
        {"key": "PASSWORD", "value": "s3cret value", "component": "db"},
    ]

    _, admin = await api.user(role=Role.ADMIN)
    as_admin = (await api.gql(SERVICE_ENV_VARS, {"id": service_id}, admin))["service"]["envVars"]
    assert [(v["key"], v["value"]) for v in as_admin] == [
        ("MODE", None),
        ("A", None),
        ("PASSWORD", None),
    ]

    stored = await EnvVar.get(service_id=int(service_id), key="PASSWORD")
    assert "s3cret" not in stored.value_encrypted
    assert SecretBox(TEST_SECRET).decrypt(stored.value_encrypted) == "s3cret value"
    assert stored.scope == "db"

    # Setting a key again changes its one row.
    variables = {"serviceId": service_id, "vars": [{"key": "MODE", "value": "test"}]}
    await api.gql(SET_ENV_VARS, variables, token)
    rows = await EnvVar.filter(service_id=int(service_id), key="MODE")
    assert len(rows) == 1 and SecretBox(TEST_SECRET).decrypt(rows[0].value_encrypted) == "test"


async def test_set_env_vars_refuses_a_malformed_reference_at_once_naming_its_key(
    api: Api,
) -> None:
    _, token = await api.user()
    service_id = (await create_service(api, token, components=[WEB, DB]))["id"]
    good = {"key": "DATABASE_URL", "value": "${{ db.DATABASE_URL }}"}
    for bad, component, says in [
        ("${{db}}", None, "BROKEN: `${{` must start a reference"),
        ("x ${{ no closing", "web", "web's BROKEN: `${{` must start a reference"),
    ]:
        variables = {
            "serviceId": service_id,
            "vars": [good, {"key": "BROKEN", "value": bad}],
            "component": component,
        }
        error = await refused(api, SET_ENV_VARS, variables, token)
        assert (error.code, error.field) == ("BAD_USER_INPUT", "value")
        assert str(error).startswith(says), str(error)
        assert bad not in str(error)
    assert await EnvVar.filter(service_id=int(service_id)).count() == 0

    # Well-formed references and the $${{ escape are kept as written, to resolve at deploy.
    escaped = {"key": "LITERAL", "value": "$${{db}}"}
    variables = {"serviceId": service_id, "vars": [good, escaped], "component": "web"}
    stored = (await api.gql(SET_ENV_VARS, variables, token))["setEnvVars"]
    assert {(v["key"], v["value"]) for v in stored} == {
        ("DATABASE_URL", "${{ db.DATABASE_URL }}"),
        ("LITERAL", "$${{db}}"),
    }


async def test_delete_env_vars_answers_the_count_and_unknown_components_are_not_found(
    api: Api,
) -> None:
    _, token = await api.user()
    service = await create_service(api, token)
    service_id = service["id"]
    pairs = [{"key": key, "value": "v"} for key in ("A", "B", "C")]
    await api.gql(SET_ENV_VARS, {"serviceId": service_id, "vars": pairs}, token)
    await api.gql(SET_ENV_VARS, {"serviceId": service_id, "vars": pairs, "component": "web"}, token)

    deleted = await api.gql(
        DELETE_ENV_VARS, {"serviceId": service_id, "keys": ["A", "B", "Z"]}, token
    )
    assert deleted["deleteEnvVars"] == 2
    left = (await api.gql(SERVICE_ENV_VARS, {"id": service_id}, token))["service"]["envVars"]
    assert [(v["key"], v["component"]) for v in left] == [
        ("C", None),
        ("A", "web"),
        ("B", "web"),
        ("C", "web"),
    ]

    for query, variables in (
        (SET_ENV_VARS, {"vars": [{"key": "A", "value": "v"}]}),
        (DELETE_ENV_VARS, {"keys": ["A"]}),
    ):
        error = await refused(
            api, query, {"serviceId": service_id, "component": "nope", **variables}, token
        )
        assert (error.code, error.field) == ("NOT_FOUND", "component")


# no N+1


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """Every SQL statement Tortoise sends while the block runs."""
    statements: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith(("Created connection pool", "Closed connection pool")):
                return
            if '"internal_records"' not in message:  # the DNS zone's poll, in the background
                statements.append(message)

    logger = logging.getLogger("tortoise.db_client")
    handler = Collect(level=logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


LIST_NAMES = "{ services(limit: 100) { items { id name components { name hostname } } } }"


async def statements_listing(api: Api, token: str) -> tuple[int, int]:
    await api.gql("{ services { totalCount } }", token=token)  # the token's first use is stamped
    with counted_statements() as statements:
        items = (await api.gql(LIST_NAMES, token=token))["services"]["items"]
    return len(items), len(statements)


async def test_listing_services_runs_the_same_statements_for_1_or_100(api: Api) -> None:
    box = SecretBox(TEST_SECRET)
    components = [
        services.ComponentSpec(name="web", type=ComponentType.DOCKER, image="nginx"),
        services.ComponentSpec(name="db", type=ComponentType.POSTGRES),
    ]
    one_user, one_token = await api.user()
    many_user, many_token = await api.user()
    await services.create_service(one_user, "solo", components, box)
    for number in range(100):
        await services.create_service(many_user, f"app{number}", components, box)

    one = await statements_listing(api, one_token)
    many = await statements_listing(api, many_token)
    assert one[0] == 1 and many[0] == 100
    assert one[1] == many[1] > 0


# deploys and containers (their pipeline is tested in tests/core/deploys)


DEPLOY = """
    mutation ($serviceId: ID!, $only: [String!]) {
        deployService(serviceId: $serviceId, only: $only) { jobId deployments { status } }
    }
"""
CANCEL = "mutation ($job: String!) { cancelDeployment(jobId: $job) { jobId } }"
STOP = "mutation ($s: ID!, $c: String!) { stopContainer(serviceId: $s, containerId: $c) }"
RESTART = "mutation ($s: ID!, $c: String!) { restartContainer(serviceId: $s, containerId: $c) }"


async def test_deploy_validates_then_queues(api: Api) -> None:
    _, token = await api.user()
    _, stranger = await api.user()
    service = await create_service(api, token, components=[WEB, DB])

    error = await refused(api, DEPLOY, {"serviceId": service["id"], "only": ["nope"]}, token)
    assert (error.code, error.field) == ("NOT_FOUND", "only")
    error = await refused(api, DEPLOY, {"serviceId": service["id"], "only": ["web"]}, stranger)
    assert error.code == "NOT_FOUND"
    job = await api.gql(DEPLOY, {"serviceId": service["id"], "only": ["web"]}, token=token)
    assert job["deployService"]["deployments"] == [{"status": "QUEUED"}]
    job_id = job["deployService"]["jobId"]
    error = await refused(api, CANCEL, {"job": job_id}, stranger)
    assert error.code == "NOT_FOUND"


async def test_container_operations_need_a_container_of_the_callers(api: Api) -> None:
    _, token = await api.user()
    _, stranger = await api.user()
    service = await create_service(api, token, components=[WEB, DB])

    for query in (STOP, RESTART):
        error = await refused(api, query, {"s": service["id"], "c": "ghost"}, token)
        assert (error.code, error.field) == ("NOT_FOUND", "containerId")
        error = await refused(api, query, {"s": service["id"], "c": "web"}, stranger)
        assert error.code == "NOT_FOUND"
        error = await refused(api, query, {"s": service["id"], "c": "db"}, token)
        assert error.code == "NOT_FOUND" and "deploy it first" in str(error)


# audit


AUDIT_LOGS = """
    query ($action: String) {
        auditLogs(action: $action) {
            totalCount items { action outcome actorEmail ip targetType targetId metadata }
        }
    }
"""


async def test_create_service_is_audited_on_success_and_failure(api: Api) -> None:
    user, token = await api.user()
    service = await create_service(api, token)
    await refused(api, CREATE_SERVICE, {"name": "admin", "components": [WEB]}, token)

    _, admin = await api.user(role=Role.ADMIN)
    log = (await api.gql(AUDIT_LOGS, {"action": "createService"}, admin))["auditLogs"]
    assert log["totalCount"] == 2
    failure, success = log["items"]
    for entry in (failure, success):
        assert entry["action"] == "createService"
        assert entry["actorEmail"] == user.email
        assert entry["ip"] == "127.0.0.1"
        assert entry["targetType"] == "service"
    assert success["outcome"] == AuditOutcome.SUCCESS.name
    assert success["targetId"] == service["id"]
    assert failure["outcome"] == AuditOutcome.FAILURE.name
    assert failure["metadata"] == {"code": "BAD_USER_INPUT"}


# what reaches a client


def assert_no_internals(body: dict[str, Any]) -> None:
    text = str(body)
    for leak in ("Traceback", 'File "', "SELECT", "INSERT", "tortoise", "digi_core"):
        assert leak not in text


async def test_graphql_errors_are_graphqls_own_and_leak_nothing(api: Api) -> None:
    _, token = await api.user()

    _, body = await api.post("{ services { items { id ", token=token)
    assert body["errors"][0]["message"].startswith("Syntax Error:")
    assert_no_internals(body)

    query = "query ($limit: Int!) { services(limit: $limit) { totalCount } }"
    _, body = await api.post(query, {"limit": "ten"}, token)
    message = body["errors"][0]["message"]
    assert (
        message
        == "Variable '$limit' has invalid value: Int cannot represent non-integer value: 'ten'"
    )
    assert_no_internals(body)

    _, body = await api.post(ONE_SERVICE, {"id": "abc"}, token)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert body["data"] is None
    assert_no_internals(body)
