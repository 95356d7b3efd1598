"""Accounts end to end: sign-up, sign-in, sessions, email links, API tokens, rate limits,
lockout, suspension, the audit log, and the admins' seeding and password rotation."""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import subprocess
import time
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from digi_core import accounts, db
from digi_core.api.context import PER_ACCOUNT, SESSION_COOKIE
from digi_core.config import Settings, load_settings
from digi_core.errors import Unauthenticated
from digi_core.models import ApiToken, AuditLog, OneTimePurpose, OneTimeToken, Role, User
from digi_core.names import PASSWORD_RULES
from digi_core.server.app import init_app
from tests.conftest import DIGI, TEST_SECRET, upgrade
from tests.core.api.conftest import PASSWORD, Api, GraphQLErrors

NEW_PASSWORD = "a brand new passphrase"

ME = "{ me { id email emailVerified role } }"
SIGN_UP = """
mutation ($email: String!, $password: String!, $name: String!) {
  signUp(email: $email, password: $password, name: $name) { id email role }
}"""
SIGN_IN = """
mutation ($email: String!, $password: String!, $tokenName: String!) {
  signIn(email: $email, password: $password, tokenName: $tokenName) {
    token apiToken { id name prefix }
  }
}"""
REQUEST_RESET = "mutation ($email: String!) { requestPasswordReset(email: $email) }"
GENERATE_TOKEN = """
mutation ($name: String!, $days: Int) {
  generateApiToken(name: $name, expiresInDays: $days) {
    token apiToken { id name prefix lastUsedAt expiresAt revokedAt }
  }
}"""
API_TOKENS = "{ apiTokens { id name prefix lastUsedAt revokedAt } }"
REVOKE_TOKEN = "mutation ($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }"
SUSPEND = "mutation ($id: ID!) { suspendUser(id: $id) { id suspended } }"
UNSUSPEND = "mutation ($id: ID!) { unsuspendUser(id: $id) { id suspended } }"
DELETE_USER = "mutation ($id: ID!) { deleteUser(id: $id) }"
AUDIT_LOGS = """
query ($action: String, $actorId: ID, $targetType: String) {
  auditLogs(action: $action, actorId: $actorId, targetType: $targetType) {
    totalCount
    items { action actorId actorEmail targetType targetId ip outcome metadata }
  }
}"""
# Any subscription that checks the caller: the job need not exist for the check to run first.
DEPLOYMENT_STATUS = 'subscription { deploymentStatus(jobId: "no-such-job") { status } }'


# --- helpers ------------------------------------------------------------------------------


async def rest(
    api: Api, path: str, body: dict[str, str] | None = None, *, cookie: str | None = None
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    """POST ``body`` as JSON to a REST endpoint, or GET without one; the jar stays empty, so a
    session only travels when a test passes its ``cookie`` explicitly."""
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    if body is None:
        response = await api.client.get(path, headers=headers)
    else:
        response = await api.client.post(path, json=body, headers=headers)
    payload = await response.json()
    api.client.session.cookie_jar.clear()
    return response, payload


async def graphql(
    api: Api,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    cookie: str | None = None,
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    """The raw response of a GraphQL request, for its status and headers."""
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    response = await api.client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    return response, await response.json()


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    """The first GraphQL error's message and extensions, flattened."""
    assert body.get("errors"), body
    first = body["errors"][0]
    return {"message": first["message"], **first.get("extensions", {})}


def session_cookie(response: aiohttp.ClientResponse) -> Any:
    """The session cookie a response sets, as a Morsel with its attributes."""
    cookies: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookies.load(header)
    return cookies[SESSION_COOKIE]


async def rest_sign_up(
    api: Api, email: str, password: str = PASSWORD, name: str = "Ada"
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    return await rest(api, "/auth/sign-up", {"email": email, "password": password, "name": name})


async def rest_sign_in(
    api: Api, email: str, password: str = PASSWORD
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    return await rest(api, "/auth/sign-in", {"email": email, "password": password})


async def session_of(api: Api, email: str, password: str = PASSWORD) -> str:
    """A browser session for an existing account, through the REST sign-in."""
    response, body = await rest_sign_in(api, email, password)
    assert response.status == 200, body
    return str(session_cookie(response).value)


async def me_with_cookie(api: Api, cookie: str) -> dict[str, Any]:
    _, body = await graphql(api, ME, cookie=cookie)
    return body


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> str:
    """An API token through the GraphQL signIn."""
    data = await api.gql(SIGN_IN, {"email": email, "password": password, "tokenName": "laptop"})
    return str(data["signIn"]["token"])


async def sign_in_error(api: Api, email: str, password: str) -> GraphQLErrors:
    with pytest.raises(GraphQLErrors) as caught:
        await sign_in(api, email, password)
    return caught.value


async def me_error(api: Api, token: str) -> GraphQLErrors:
    with pytest.raises(GraphQLErrors) as caught:
        await api.gql(ME, token=token)
    return caught.value


async def ws_connect(api: Api, token: str) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    """A graphql-transport-ws connection initialised with ``token``, and the first answer."""
    websocket = await api.websocket()
    await websocket.send_json({"type": "connection_init", "payload": {"token": token}})
    return websocket, await websocket.receive(timeout=10)


async def admin_audit_logs(api: Api, admin_token: str, **filters: str) -> dict[str, Any]:
    data = await api.gql(AUDIT_LOGS, filters, token=admin_token)
    return dict(data["auditLogs"])


# --- REST sign-up, sessions and sign-out ----------------------------------------------------


async def test_rest_sign_up_sets_an_http_only_session_cookie_that_authenticates_graphql(
    api: Api,
) -> None:
    response, body = await rest_sign_up(api, "ada@example.com")

    assert response.status == 201, body
    cookie = session_cookie(response)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # the test server's base URL is plain http
    assert cookie.value.startswith(accounts.SESSION_TOKEN_PREFIX)
    me = await me_with_cookie(api, cookie.value)
    assert me["data"]["me"]["email"] == "ada@example.com"


async def test_rest_sign_up_refuses_a_weak_password_with_the_rules(api: Api) -> None:
    response, body = await rest_sign_up(api, "weak@example.com", password="short")

    assert response.status == 400
    assert body["error"] == {
        "message": PASSWORD_RULES,
        "code": "BAD_USER_INPUT",
        "field": "password",
    }
    assert "Set-Cookie" not in response.headers
    assert not await User.exists(email="weak@example.com")


async def test_rest_sign_up_normalises_the_email_so_another_spelling_is_a_conflict(
    api: Api,
) -> None:
    response, body = await rest_sign_up(api, "  Grace.Hopper@Example.COM  ")

    assert response.status == 201, body
    assert body["user"]["email"] == "grace.hopper@example.com"
    assert await User.exists(email="grace.hopper@example.com")
    me = await me_with_cookie(api, session_cookie(response).value)
    assert me["data"]["me"]["email"] == "grace.hopper@example.com"
    again, body = await rest_sign_up(api, "GRACE.hopper@example.com ")
    assert again.status == 409
    assert body["error"]["code"] == "CONFLICT"
    assert body["error"]["field"] == "email"
    assert "Set-Cookie" not in again.headers
    assert await User.filter(email="grace.hopper@example.com").count() == 1


async def test_rest_sign_out_revokes_the_session_cookie(api: Api) -> None:
    response, _ = await rest_sign_up(api, "leaving@example.com")
    cookie = session_cookie(response).value
    assert "errors" not in await me_with_cookie(api, cookie)

    signed_out, body = await rest(api, "/auth/sign-out", {}, cookie=cookie)

    assert signed_out.status == 200 and body == {"ok": True}
    assert session_cookie(signed_out).value == ""  # the browser is told to drop it
    assert error_of(await me_with_cookie(api, cookie))["code"] == "UNAUTHENTICATED"


# --- GraphQL sign-up and sign-in ------------------------------------------------------------


async def test_graphql_sign_up_then_sign_in_gives_a_bearer_token(api: Api) -> None:
    data = await api.gql(
        SIGN_UP, {"email": "linus@example.com", "password": PASSWORD, "name": "Linus"}
    )
    assert data["signUp"]["email"] == "linus@example.com"

    signed_in = await api.gql(
        SIGN_IN, {"email": "linus@example.com", "password": PASSWORD, "tokenName": "my laptop"}
    )

    token = signed_in["signIn"]["token"]
    assert token.startswith(accounts.API_TOKEN_PREFIX)
    assert signed_in["signIn"]["apiToken"]["name"] == "my laptop"
    me = await api.gql(ME, token=token)
    assert me["me"]["email"] == "linus@example.com"
    assert me["me"]["id"] == data["signUp"]["id"]


async def test_sign_in_failure_says_the_same_for_unknown_email_and_wrong_password(
    api: Api,
) -> None:
    await api.user("known@example.com")

    unknown = await sign_in_error(api, "nobody@example.com", PASSWORD)
    wrong = await sign_in_error(api, "known@example.com", "not the password")

    assert unknown.code == wrong.code == "UNAUTHENTICATED"
    assert str(unknown) == str(wrong) == "wrong email or password"


# --- email verification ---------------------------------------------------------------------


async def test_the_verification_mail_link_verifies_the_email_once(api: Api) -> None:
    response, _ = await rest_sign_up(api, "verify@example.com")
    cookie = session_cookie(response).value
    assert (await me_with_cookie(api, cookie))["data"]["me"]["emailVerified"] is False

    link = urlsplit(await api.inbox.next_link("verify@example.com"))
    assert link.path == "/auth/verify-email"
    assert link.query.startswith("token=")
    verified, body = await rest(api, f"{link.path}?{link.query}")

    assert verified.status == 200, body
    assert body == {"ok": True, "email": "verify@example.com"}
    assert (await me_with_cookie(api, cookie))["data"]["me"]["emailVerified"] is True
    again, body = await rest(api, f"{link.path}?{link.query}")
    assert again.status == 400
    assert body["error"]["code"] == "BAD_USER_INPUT"


# --- password reset -------------------------------------------------------------------------


async def test_password_reset_mails_only_a_known_email_and_its_link_works_once(
    api: Api,
) -> None:
    await api.user("reset@example.com")
    cookie = await session_of(api, "reset@example.com")

    known = await api.gql(REQUEST_RESET, {"email": "reset@example.com"})
    unknown = await api.gql(REQUEST_RESET, {"email": "stranger@example.com"})

    assert known == unknown == {"requestPasswordReset": True}
    link = urlsplit(await api.inbox.next_link("reset@example.com"))
    assert link.path == "/auth/reset-password"
    # The mail is handed over before the mutation answers, so none can still be on its way.
    assert [m for m in api.inbox.messages if m["To"] == "stranger@example.com"] == []
    token = link.query.removeprefix("token=")
    response, body = await rest(
        api, "/auth/reset-password", {"token": token, "password": NEW_PASSWORD}
    )
    assert response.status == 200 and body == {"ok": True}
    assert (await sign_in_error(api, "reset@example.com", PASSWORD)).code == "UNAUTHENTICATED"
    assert await sign_in(api, "reset@example.com", NEW_PASSWORD)
    assert error_of(await me_with_cookie(api, cookie))["code"] == "UNAUTHENTICATED"
    again, body = await rest(
        api, "/auth/reset-password", {"token": token, "password": "yet another passphrase"}
    )
    assert again.status == 400
    assert body["error"]["code"] == "BAD_USER_INPUT"
    assert await sign_in(api, "reset@example.com", NEW_PASSWORD)


async def test_an_expired_password_reset_link_fails(api: Api) -> None:
    user, _ = await api.user("slow@example.com")
    await api.gql(REQUEST_RESET, {"email": "slow@example.com"})
    token = urlsplit(await api.inbox.next_link("slow@example.com")).query.removeprefix("token=")
    expired = await OneTimeToken.filter(
        user=user, purpose=OneTimePurpose.RESET_PASSWORD, used_at__isnull=True
    ).update(expires_at=accounts.now() - timedelta(minutes=1))
    assert expired == 1

    response, body = await rest(
        api, "/auth/reset-password", {"token": token, "password": NEW_PASSWORD}
    )

    assert response.status == 400
    assert body["error"]["code"] == "BAD_USER_INPUT"
    assert await sign_in(api, "slow@example.com", PASSWORD)


# --- API tokens -----------------------------------------------------------------------------


async def test_generated_api_token_is_shown_once_stored_as_a_hash_and_listed(api: Api) -> None:
    _, owner_token = await api.user("tokens@example.com")

    data = await api.gql(GENERATE_TOKEN, {"name": "deploy bot", "days": 30}, token=owner_token)

    token = data["generateApiToken"]["token"]
    made = data["generateApiToken"]["apiToken"]
    prefix = token[: len(accounts.API_TOKEN_PREFIX) + 6]
    assert token.startswith(accounts.API_TOKEN_PREFIX)
    assert made["prefix"] == prefix
    assert made["expiresAt"] is not None and made["lastUsedAt"] is None
    row = (await ApiToken.filter(id=int(made["id"])).values())[0]
    assert row["token_hash"] != token
    assert [column for column, value in row.items() if token in str(value)] == []
    assert (await api.gql(ME, token=token))["me"]["email"] == "tokens@example.com"
    listing = await api.gql(API_TOKENS, token=owner_token)
    assert token not in str(listing)  # shown once: the listing never carries it again
    listed = {t["id"]: t for t in listing["apiTokens"]}[made["id"]]
    assert (listed["name"], listed["prefix"]) == ("deploy bot", prefix)
    assert listed["lastUsedAt"] is not None
    assert listed["revokedAt"] is None


async def test_only_the_owner_revokes_a_token_which_then_stops_over_http_and_websocket(
    api: Api,
) -> None:
    _, owner_token = await api.user("revoker@example.com")
    _, other_token = await api.user("other@example.com")
    data = await api.gql(GENERATE_TOKEN, {"name": "doomed"}, token=owner_token)
    token = data["generateApiToken"]["token"]
    token_id = data["generateApiToken"]["apiToken"]["id"]
    open_socket, answer = await ws_connect(api, token)
    assert answer.type is aiohttp.WSMsgType.TEXT and answer.json()["type"] == "connection_ack"
    with pytest.raises(GraphQLErrors) as not_theirs:
        await api.gql(REVOKE_TOKEN, {"id": token_id}, token=other_token)
    assert not_theirs.value.code == "NOT_FOUND"
    assert (await api.gql(ME, token=token))["me"]["email"] == "revoker@example.com"

    revoked = await api.gql(REVOKE_TOKEN, {"id": token_id}, token=owner_token)

    assert revoked["revokeApiToken"]["revokedAt"] is not None
    assert (await me_error(api, token)).code == "UNAUTHENTICATED"
    new_socket, answer = await ws_connect(api, token)
    assert answer.type is aiohttp.WSMsgType.CLOSE
    assert new_socket.close_code == 4403
    await new_socket.close()
    # A connection opened before the revocation cannot start a subscription after it.
    await open_socket.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": DEPLOYMENT_STATUS}}
    )
    message = await open_socket.receive_json(timeout=10)
    assert message["type"] == "next", message
    assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await open_socket.close()


async def test_an_expired_token_is_unauthenticated(api: Api) -> None:
    _, owner_token = await api.user("expiring@example.com")
    data = await api.gql(GENERATE_TOKEN, {"name": "short-lived", "days": 1}, token=owner_token)
    token = data["generateApiToken"]["token"]
    assert await api.gql(ME, token=token)

    await ApiToken.filter(id=int(data["generateApiToken"]["apiToken"]["id"])).update(
        expires_at=accounts.now() - timedelta(seconds=1)
    )

    error = await me_error(api, token)
    assert error.code == "UNAUTHENTICATED"
    assert "expired" in str(error)


# --- rate limits and lockout ----------------------------------------------------------------


async def test_rest_sign_ins_past_the_per_account_limit_get_429_with_retry_after(
    api: Api,
) -> None:
    await api.user("busy@example.com")
    allowed = await asyncio.gather(
        *(rest_sign_in(api, "busy@example.com") for _ in range(PER_ACCOUNT[0]))
    )
    assert [response.status for response, _ in allowed] == [200] * PER_ACCOUNT[0]

    response, body = await rest_sign_in(api, "busy@example.com")

    assert response.status == 429
    assert body["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["Retry-After"]) <= PER_ACCOUNT[1]


async def test_graphql_sign_ins_past_the_limit_get_429_with_retry_after(api: Api) -> None:
    await api.user("eager@example.com")
    variables = {"email": "eager@example.com", "password": PASSWORD, "tokenName": "cli"}
    allowed = await asyncio.gather(
        *(graphql(api, SIGN_IN, variables) for _ in range(PER_ACCOUNT[0]))
    )
    assert [(r.status, "errors" in body) for r, body in allowed] == [(200, False)] * PER_ACCOUNT[0]

    response, body = await graphql(api, SIGN_IN, variables)

    assert response.status == 429
    assert error_of(body)["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["Retry-After"]) <= PER_ACCOUNT[1]


async def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(api: Api) -> None:
    await api.user("target@example.com")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        error = await sign_in_error(api, "target@example.com", "guess guess guess")
        assert error.code == "UNAUTHENTICATED"

    response, body = await graphql(
        api, SIGN_IN, {"email": "target@example.com", "password": PASSWORD, "tokenName": "t"}
    )

    locked = error_of(body)
    assert locked["code"] == "RATE_LIMITED"
    assert "locked" in locked["message"]
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    response, body = await rest_sign_in(api, "target@example.com")
    assert response.status == 429
    assert body["error"]["code"] == "RATE_LIMITED"
    assert int(response.headers["Retry-After"]) > 0


async def test_sign_in_failures_take_as_long_for_an_unknown_email_as_a_wrong_password(
    api: Api,
) -> None:
    await api.user("timed@example.com")

    async def failure_seconds(email: str) -> float:
        started = time.perf_counter()
        _, body = await graphql(
            api, SIGN_IN, {"email": email, "password": "wrong password!", "tokenName": "t"}
        )
        elapsed = time.perf_counter() - started
        assert error_of(body)["code"] == "UNAUTHENTICATED"
        return elapsed

    await failure_seconds("warm-up@example.com")
    unknown, known = [], []
    # The last failure locks the known account, after its password was checked all the same.
    for _ in range(accounts.MAX_FAILED_LOGINS):
        unknown.append(await failure_seconds("ghost@example.com"))
        known.append(await failure_seconds("timed@example.com"))

    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 <= ratio <= 2.0, (unknown, known)


# --- suspension and deletion ----------------------------------------------------------------


async def test_suspension_stops_tokens_and_sessions_at_once_and_unsuspension_restores_them(
    api: Api,
) -> None:
    _, admin_token = await api.user("admin@example.com", role=Role.ADMIN)
    user, user_token = await api.user("suspect@example.com")
    cookie = await session_of(api, "suspect@example.com")

    suspended = await api.gql(SUSPEND, {"id": str(user.id)}, token=admin_token)

    assert suspended["suspendUser"]["suspended"] is True
    assert (await me_error(api, user_token)).code == "UNAUTHENTICATED"
    assert error_of(await me_with_cookie(api, cookie))["code"] == "UNAUTHENTICATED"
    assert (await sign_in_error(api, "suspect@example.com", PASSWORD)).code == "UNAUTHENTICATED"

    await api.gql(UNSUSPEND, {"id": str(user.id)}, token=admin_token)

    assert (await api.gql(ME, token=user_token))["me"]["email"] == "suspect@example.com"
    assert (await me_with_cookie(api, cookie))["data"]["me"]["email"] == "suspect@example.com"


async def test_only_admins_suspend_and_never_themselves(api: Api) -> None:
    admin, admin_token = await api.user("boss@example.com", role=Role.ADMIN)
    _, user_token = await api.user("peer@example.com")
    victim, _ = await api.user("victim@example.com")

    with pytest.raises(GraphQLErrors) as not_admin:
        await api.gql(SUSPEND, {"id": str(victim.id)}, token=user_token)
    with pytest.raises(GraphQLErrors) as self_suspension:
        await api.gql(SUSPEND, {"id": str(admin.id)}, token=admin_token)

    assert not_admin.value.code == "FORBIDDEN"
    assert self_suspension.value.code == "CONFLICT"
    assert (await User.get(id=victim.id)).suspended_at is None
    assert (await User.get(id=admin.id)).suspended_at is None


SET_PLAN = """mutation ($id: ID!, $plan: Plan!, $blocks: Int) {
  setUserPlan(id: $id, plan: $plan, extraStorageBlocks: $blocks) { plan extraStorageBlocks }
}"""


async def test_an_admin_sets_a_users_plan_and_storage_blocks(api: Api) -> None:
    _, admin_token = await api.user("plans@example.com", role=Role.ADMIN)
    _, user_token = await api.user("payer@example.com")
    user, _ = await api.user("customer@example.com")

    def variables(plan: str, blocks: int | None = None) -> dict[str, Any]:
        return {"id": str(user.id), "plan": plan, "blocks": blocks}

    pro = await api.gql(SET_PLAN, variables("PRO", 2), token=admin_token)
    assert pro["setUserPlan"] == {"plan": "PRO", "extraStorageBlocks": 2}
    kept = await api.gql(SET_PLAN, variables("PRO"), token=admin_token)
    assert kept["setUserPlan"] == {"plan": "PRO", "extraStorageBlocks": 2}
    for plan, blocks, message in (
        ("FREE", 1, "extra storage blocks need the Pro plan"),
        ("PRO", -1, "extraStorageBlocks must be 0-64"),
        ("PRO", 65, "extraStorageBlocks must be 0-64"),
    ):
        with pytest.raises(GraphQLErrors, match=message) as refused:
            await api.gql(SET_PLAN, variables(plan, blocks), token=admin_token)
        assert (refused.value.code, refused.value.field) == ("BAD_USER_INPUT", "extraStorageBlocks")
    assert (await User.get(id=user.id)).extra_storage_blocks == 2
    free = await api.gql(SET_PLAN, variables("FREE"), token=admin_token)
    assert free["setUserPlan"] == {"plan": "FREE", "extraStorageBlocks": 0}

    with pytest.raises(GraphQLErrors) as not_admin:
        await api.gql(SET_PLAN, variables("PRO"), token=user_token)
    assert not_admin.value.code == "FORBIDDEN"
    entries = (await admin_audit_logs(api, admin_token, action="setUserPlan"))["items"]
    assert [entry["outcome"] for entry in entries].count("SUCCESS") == 3
    assert {entry["targetId"] for entry in entries} == {str(user.id)}


async def test_delete_user_anonymises_the_account_and_keeps_its_audit_entries(api: Api) -> None:
    _, admin_token = await api.user("root@example.com", role=Role.ADMIN)
    user, user_token = await api.user("gone@example.com")
    await session_of(api, "gone@example.com")  # an audited sign-in by the user
    before = await admin_audit_logs(api, admin_token, actorId=str(user.id))
    assert before["totalCount"] >= 1

    removed = await api.gql(DELETE_USER, {"id": str(user.id)}, token=admin_token)

    assert removed["deleteUser"][0] == f"user {user.id}"
    row = await User.get(id=user.id)
    assert row.email == f"deleted-{user.id}@users.invalid"
    assert row.name == "" and row.password_hash is None and row.deleted_at is not None
    assert await ApiToken.filter(user_id=user.id).count() == 0
    assert (await me_error(api, user_token)).code == "UNAUTHENTICATED"
    after = await admin_audit_logs(api, admin_token, actorId=str(user.id))
    assert after["totalCount"] == before["totalCount"]
    assert await AuditLog.filter(actor_id=user.id).count() == before["totalCount"]


# --- audit log ------------------------------------------------------------------------------


async def test_audit_log_records_sign_ins_with_ip_outcome_and_actor(api: Api) -> None:
    _, admin_token = await api.user("auditor@example.com", role=Role.ADMIN)
    user, _ = await api.user("watched@example.com")
    await session_of(api, "watched@example.com")
    failed, _ = await rest_sign_in(api, "watched@example.com", "not my password")
    assert failed.status == 401

    page = await admin_audit_logs(api, admin_token, action="signIn")

    assert page["totalCount"] == len(page["items"]) == 2
    assert {entry["action"] for entry in page["items"]} == {"signIn"}
    assert {entry["ip"] for entry in page["items"]} == {"127.0.0.1"}
    by_outcome = {entry["outcome"]: entry for entry in page["items"]}
    assert by_outcome["SUCCESS"]["actorId"] == str(user.id)
    assert by_outcome["SUCCESS"]["actorEmail"] == "watched@example.com"
    assert by_outcome["FAILURE"]["metadata"] == {
        "code": "UNAUTHENTICATED",
        "email": "watched@example.com",
    }


async def test_audit_log_filters_by_action_actor_and_target_type(api: Api) -> None:
    admin, admin_token = await api.user("filter-admin@example.com", role=Role.ADMIN)
    user, user_token = await api.user("filtered@example.com")
    await api.gql(GENERATE_TOKEN, {"name": "extra"}, token=user_token)
    await api.gql(SUSPEND, {"id": str(user.id)}, token=admin_token)
    await api.gql(UNSUSPEND, {"id": str(user.id)}, token=admin_token)

    by_admin = await admin_audit_logs(api, admin_token, actorId=str(admin.id))
    suspensions = await admin_audit_logs(api, admin_token, action="suspendUser")
    on_tokens = await admin_audit_logs(api, admin_token, targetType="token")
    on_users = await admin_audit_logs(api, admin_token, targetType="user")

    assert [e["action"] for e in by_admin["items"]] == ["unsuspendUser", "suspendUser"]
    assert by_admin["totalCount"] == 2
    assert suspensions["totalCount"] == 1
    assert suspensions["items"][0]["targetId"] == str(user.id)
    assert suspensions["items"][0]["actorId"] == str(admin.id)
    assert suspensions["items"][0]["outcome"] == "SUCCESS"
    assert [(e["action"], e["actorId"]) for e in on_tokens["items"]] == [
        ("generateApiToken", str(user.id))
    ]
    assert {e["targetType"] for e in on_users["items"]} == {"user"}
    assert on_users["totalCount"] == len(on_users["items"]) == 2
    with pytest.raises(GraphQLErrors) as not_admin:
        await api.gql(AUDIT_LOGS, {}, token=user_token)
    assert not_admin.value.code == "FORBIDDEN"


# --- admins: seeding, no admin through the API, rotation ------------------------------------


def seed_admin(env: dict[str, str], email: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGI, "seed-admin", email, "Ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_seed_admin_prints_a_password_once_that_signs_in_and_refuses_a_second_seed(
    subprocess_env: dict[str, str], tmp_path: Path, clean_env: Path
) -> None:
    data_dir = tmp_path / "seeded"
    env = {**subprocess_env, "DIGI_DATA_DIR": str(data_dir)}

    seeded = seed_admin(env, "ops@example.com")

    assert seeded.returncode == 0, seeded.stderr
    passwords = re.findall(r"^password: (\S+)$", seeded.stdout, re.MULTILINE)
    assert len(passwords) == 1, seeded.stdout
    again = seed_admin(env, "OPS@example.com")
    assert again.returncode == 7
    assert "password" not in again.stdout
    assert "CONFLICT" in again.stderr
    assert "Traceback" not in again.stderr + again.stdout
    await db.open_database(load_settings(DIGI_DATA_DIR=data_dir))
    try:
        admin = await accounts.sign_in("ops@example.com", passwords[0])
        assert admin.role is Role.ADMIN
        assert admin.email_verified_at is not None
        assert await User.filter(role=Role.ADMIN).count() == 1
    finally:
        await db.close_database()


async def test_graphql_sign_up_cannot_make_an_admin(api: Api) -> None:
    made = await api.gql(
        SIGN_UP, {"email": "wannabe@example.com", "password": PASSWORD, "name": "Mallory"}
    )
    assert made["signUp"]["role"] == "USER"

    with pytest.raises(GraphQLErrors) as caught:
        await api.gql(
            """mutation { signUp(email: "sneaky@example.com", password: "correct horse battery",
                                 role: ADMIN) { id } }"""
        )

    assert "role" in str(caught.value)
    assert not await User.exists(email="sneaky@example.com")
    assert await User.filter(role=Role.ADMIN).count() == 0


ROTATION_MESSAGE = re.compile(
    r"rotated the password of admin (?P<email>\S+); the new password is: (?P<password>\S+)$"
)


def rotated_password(caplog: pytest.LogCaptureFixture, email: str) -> str:
    for record in caplog.records:
        if record.name != "digi_core.accounts" or record.levelno != logging.WARNING:
            continue
        found = ROTATION_MESSAGE.search(record.getMessage())
        if found and found["email"] == email:
            return found["password"]
    raise AssertionError(f"no rotation of {email} logged: {caplog.text}")


class RotationLog(logging.Handler):
    """Collects the new admin passwords the server logs, and says when one arrives."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.passwords: dict[str, str] = {}
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        found = ROTATION_MESSAGE.search(record.getMessage())
        if found:
            self.passwords[found["email"]] = found["password"]
            self.arrived.set()


async def test_admin_passwords_older_than_a_day_rotate_with_the_new_one_logged(
    migrated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    stale, stale_password = await accounts.seed_admin("stale@example.com", "Stale")
    await accounts.seed_admin("fresh@example.com", "Fresh")
    await User.filter(id=stale.id).update(password_changed_at=accounts.now() - timedelta(hours=25))
    caplog.set_level(logging.WARNING, logger="digi_core.accounts")

    assert await accounts.rotate_admin_passwords() == 1

    new_password = rotated_password(caplog, "stale@example.com")
    assert "fresh@example.com" not in caplog.text
    with pytest.raises(Unauthenticated):
        await accounts.sign_in("stale@example.com", stale_password)
    assert (await accounts.sign_in("stale@example.com", new_password)).id == stale.id


async def test_the_server_rotates_a_stale_admin_password_when_it_starts(
    tmp_path: Path, clean_env: Path
) -> None:
    settings = load_settings(DIGI_DATA_DIR=tmp_path / "data", DIGI_SECRET=TEST_SECRET)
    await upgrade(settings)
    await db.open_database(settings)
    try:
        admin, old_password = await accounts.seed_admin("night@example.com", "Night")
        await User.filter(id=admin.id).update(
            password_changed_at=accounts.now() - timedelta(hours=25)
        )
    finally:
        await db.close_database()
    rotations = RotationLog()
    logging.getLogger("digi_core.accounts").addHandler(rotations)
    client = TestClient(TestServer(init_app(settings)))
    await client.start_server()
    try:
        await asyncio.wait_for(rotations.arrived.wait(), timeout=10)
        new_password = rotations.passwords["night@example.com"]
        response = await client.post(
            "/auth/sign-in", json={"email": "night@example.com", "password": new_password}
        )
        assert response.status == 200
        response = await client.post(
            "/auth/sign-in", json={"email": "night@example.com", "password": old_password}
        )
        assert response.status == 401
    finally:
        await client.close()
        logging.getLogger("digi_core.accounts").removeHandler(rotations)


async def test_create_user_prints_a_token_that_the_api_takes(
    api: Api, subprocess_env: dict[str, str]
) -> None:
    env = {
        **subprocess_env,
        "DIGI_DATA_DIR": str(api.settings.data_dir),
        "DATABASE_URL": api.settings.database_url,
        "DIGI_SECRET": TEST_SECRET,
    }
    made = await asyncio.to_thread(
        subprocess.run,
        [DIGI, "create-user", "dev@example.com", "--name", "Dev", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    me = await api.gql("{ me { email emailVerified } }", token=token)
    assert me["me"] == {"email": "dev@example.com", "emailVerified": True}
    again = await asyncio.to_thread(
        subprocess.run,
        [DIGI, "create-user", "dev@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 7 and "CONFLICT" in again.stderr and not again.stdout
