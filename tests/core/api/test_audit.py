"""The audit log names who signed in over GraphQL, and which account a failed attempt tried."""

from __future__ import annotations

from digi_core.models import Role
from tests.core.api.conftest import PASSWORD, Api

SIGN_IN = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { token } }"
ENTRIES = (
    '{ auditLogs(action: "signIn") { items { actorEmail targetType targetId outcome metadata } } }'
)


async def test_graphql_sign_in_is_attributed(api: Api) -> None:
    user, _ = await api.user("cli-user@example.com")
    _, admin_token = await api.user("auditor@example.com", role=Role.ADMIN)
    await api.gql(SIGN_IN, {"e": "CLI-user@example.com", "p": PASSWORD})
    _, failed = await api.post(SIGN_IN, {"e": "cli-user@example.com", "p": "not the password"})
    assert failed["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    entries = (await api.gql(ENTRIES, token=admin_token))["auditLogs"]["items"]
    failure, success = entries  # newest first
    assert success["outcome"] == "SUCCESS"
    assert success["actorEmail"] == "cli-user@example.com"
    assert (success["targetType"], success["targetId"]) == ("user", str(user.id))
    assert failure["outcome"] == "FAILURE"
    assert failure["actorEmail"] is None
    assert failure["metadata"] == {"email": "cli-user@example.com", "code": "UNAUTHENTICATED"}
    assert "not the password" not in str(entries) and PASSWORD not in str(entries)
