"""REST endpoints under /auth/ for browsers: sign-up, sign-in with an HTTP-only session cookie,
sign-out, email verification and password reset."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from digi_core import accounts, audit
from digi_core.api.context import SESSION_COOKIE, Context, bearer_token
from digi_core.errors import BadUserInput, DigiError, RateLimited
from digi_core.models import AuditOutcome, TokenKind, User
from digi_core.server.keys import MAILER, SETTINGS


def setup_auth_routes(app: web.Application) -> None:
    app.router.add_post("/auth/sign-up", sign_up)
    app.router.add_post("/auth/sign-in", sign_in)
    app.router.add_post("/auth/sign-out", sign_out)
    app.router.add_get("/auth/verify-email", verify_email)
    app.router.add_post("/auth/request-password-reset", request_password_reset)
    app.router.add_post("/auth/reset-password", reset_password)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
    except ValueError:
        raise BadUserInput("the body must be JSON or a form") from None
    if not isinstance(body, dict):
        raise BadUserInput("the body must be a JSON object")
    return {key: value for key, value in body.items() if isinstance(value, str)}


async def _audited(
    request: web.Request,
    action: str,
    user: User | None,
    error: DigiError | None,
    *,
    email: str | None = None,
) -> None:
    outcome = AuditOutcome.FAILURE if error else AuditOutcome.SUCCESS
    metadata: dict[str, str] = {"code": error.code} if error else {}
    if email:  # which account a failed sign-in tried: the pattern of an attack
        metadata["email"] = email.strip().lower()[:254]
    await audit.record(
        action,
        actor=user,
        outcome=outcome,
        ip=request.remote,
        target_type="user",
        target_id=user.id if user else None,
        metadata=metadata,
    )


def _error(error: DigiError) -> web.Response:
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_seconds)
    return web.json_response(
        {"error": {"message": error.message, **error.extensions}},
        status=error.http_status,
        headers=headers,
    )


async def sign_up(request: web.Request) -> web.Response:
    context = Context(request=request, response=web.Response())
    body = await _body(request)
    user = None
    try:
        await context.rate_limit("sign-up", body.get("email"))
        user = await accounts.create_user(
            body.get("email", ""), body.get("password", ""), body.get("name", "")
        )
        await accounts.send_verification_email(request.app[SETTINGS], request.app[MAILER], user)
    except DigiError as error:
        await _audited(request, "signUp", user, error)
        return _error(error)
    await _audited(request, "signUp", user, None)
    return await _start_session(request, user, status=201)


async def sign_in(request: web.Request) -> web.Response:
    context = Context(request=request, response=web.Response())
    body = await _body(request)
    try:
        await context.rate_limit("sign-in", body.get("email"))
        user = await accounts.sign_in(body.get("email", ""), body.get("password", ""))
    except DigiError as error:
        await _audited(request, "signIn", None, error, email=body.get("email", ""))
        return _error(error)
    await _audited(request, "signIn", user, None)
    return await _start_session(request, user, status=200)


async def sign_out(request: web.Request) -> web.Response:
    presented = bearer_token(request)
    if presented:
        try:
            user, token = await accounts.authenticate(request.app[SETTINGS].secret_value, presented)
        except DigiError:
            pass
        else:
            await accounts.revoke(token)
            await _audited(request, "signOut", user, None)
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def verify_email(request: web.Request) -> web.Response:
    try:
        user = await accounts.verify_email(
            request.app[SETTINGS].secret_value, request.query.get("token", "")
        )
    except DigiError as error:
        return _error(error)
    await _audited(request, "verifyEmail", user, None)
    return web.json_response({"ok": True, "email": user.email})


async def request_password_reset(request: web.Request) -> web.Response:
    context = Context(request=request, response=web.Response())
    body = await _body(request)
    email = body.get("email", "").strip().lower()
    try:
        await context.rate_limit("reset", email)
    except DigiError as error:
        return _error(error)
    await accounts.send_password_reset_email(request.app[SETTINGS], request.app[MAILER], email)
    # The same answer either way: whether an email has an account is not told.
    return web.json_response({"ok": True})


async def reset_password(request: web.Request) -> web.Response:
    context = Context(request=request, response=web.Response())
    body = await _body(request)
    try:
        await context.rate_limit("reset-use")
        user = await accounts.reset_password(
            request.app[SETTINGS].secret_value, body.get("token", ""), body.get("password", "")
        )
    except DigiError as error:
        return _error(error)
    await _audited(request, "resetPassword", user, None)
    return web.json_response({"ok": True})


async def _start_session(request: web.Request, user: User, *, status: int) -> web.Response:
    settings = request.app[SETTINGS]
    _, plaintext = await accounts.issue_token(
        settings.secret_value,
        user,
        request.headers.get("User-Agent", "browser")[:100] or "browser",
        kind=TokenKind.SESSION,
        expires_at=accounts.now() + accounts.SESSION_LIFETIME,
    )
    response = web.json_response(
        {"user": {"id": str(user.id), "email": user.email, "name": user.name}}, status=status
    )
    response.set_cookie(
        SESSION_COOKIE,
        plaintext,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=settings.base_url.startswith("https://"),
        path="/",
    )
    return response
