"""GraphQL operations on the caller's account: sign-up, sign-in, email links and API tokens."""

from __future__ import annotations

from datetime import timedelta

import strawberry

from digi_core import accounts
from digi_core.api.auditing import mutation
from digi_core.api.context import Info
from digi_core.api.types import ApiToken, NewApiToken, User
from digi_core.errors import BadUserInput, RateLimited
from digi_core.models import ApiToken as ApiTokenRow
from digi_core.models import TokenKind
from digi_core.names import record_id

MAX_TOKEN_DAYS = 3650


@strawberry.type
class AccountQuery:
    @strawberry.field(description="The signed-in user.")
    async def me(self, info: Info) -> User:
        return User.of(await info.context.require_user())

    @strawberry.field(description="The caller's API tokens, newest first.")
    async def api_tokens(self, info: Info) -> list[ApiToken]:
        user = await info.context.require_user()
        rows = await ApiTokenRow.filter(user=user, kind=TokenKind.API).order_by("-created_at")
        return [ApiToken.of(row) for row in rows]


@strawberry.type
class AccountMutation:
    @mutation("user", description="Create an account; a verification link goes by email.")
    async def sign_up(self, info: Info, email: str, password: str, name: str = "") -> User:
        await info.context.rate_limit("sign-up", email)
        user = await accounts.create_user(email, password, name)
        await accounts.send_verification_email(info.context.settings, info.context.mailer, user)
        return User.of(user)

    @mutation("user", description="Exchange email and password for a new named API token.")
    async def sign_in(
        self, info: Info, email: str, password: str, token_name: str = "digi cli"
    ) -> NewApiToken:
        info.context.audit_metadata["email"] = email.strip().lower()[:254]
        await info.context.rate_limit("sign-in", email)
        try:
            user = await accounts.sign_in(email, password)
        except RateLimited as error:  # a locked account: 429 and Retry-After, as over REST
            info.context.mark_rate_limited(error)
            raise
        info.context.audit_actor = user
        row, plaintext = await accounts.issue_token(
            info.context.settings.secret_value, user, token_name
        )
        return NewApiToken(token=plaintext, api_token=ApiToken.of(row))

    @mutation("token", description="Revoke the token or session this request came with.")
    async def sign_out(self, info: Info) -> bool:
        await info.context.require_user()
        if info.context.token is not None:
            await accounts.revoke(info.context.token)
        return True

    @mutation("user", description="Confirm an email address with the token from the email.")
    async def verify_email(self, info: Info, token: str) -> bool:
        await accounts.verify_email(info.context.settings.secret_value, token)
        return True

    @mutation("user", description="Send the verification email again.")
    async def resend_verification(self, info: Info) -> bool:
        user = await info.context.require_user()
        await info.context.rate_limit("verify", user.email)
        if user.email_verified_at is None:
            await accounts.send_verification_email(info.context.settings, info.context.mailer, user)
        return True

    @mutation(
        "user",
        description="Email a password reset link. Answers true whether or not the email exists.",
    )
    async def request_password_reset(self, info: Info, email: str) -> bool:
        await info.context.rate_limit("reset", email)
        await accounts.send_password_reset_email(info.context.settings, info.context.mailer, email)
        return True

    @mutation("user", description="Set a new password with the token from the reset email.")
    async def reset_password(self, info: Info, token: str, new_password: str) -> bool:
        await info.context.rate_limit("reset-use")
        await accounts.reset_password(info.context.settings.secret_value, token, new_password)
        return True

    @mutation("token", description="A new API token for the caller; the token is shown once.")
    async def generate_api_token(
        self, info: Info, name: str, expires_in_days: int | None = None
    ) -> NewApiToken:
        user = await info.context.require_user()
        await info.context.rate_limit("token", user.email)
        expires_at = None
        if expires_in_days is not None:
            if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
                raise BadUserInput(
                    f"expiresInDays must be between 1 and {MAX_TOKEN_DAYS}", field="expiresInDays"
                )
            expires_at = accounts.now() + timedelta(days=expires_in_days)
        row, plaintext = await accounts.issue_token(
            info.context.settings.secret_value, user, name, expires_at=expires_at
        )
        return NewApiToken(token=plaintext, api_token=ApiToken.of(row))

    @mutation("token", description="Revoke one of the caller's API tokens.")
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> ApiToken:
        user = await info.context.require_user()
        token_id = record_id(id, "API token")
        return ApiToken.of(await accounts.revoke_token(user, token_id))
