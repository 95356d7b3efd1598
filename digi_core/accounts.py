"""Accounts: sign-up, sign-in, API tokens and sessions, email tokens, admins and their rotation."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise.expressions import Q

from digi_core.crypto import token_hash
from digi_core.errors import BadUserInput, Conflict, NotFound, RateLimited, Unauthenticated
from digi_core.mail import Mailer, MailError, password_reset_email, verification_email
from digi_core.models import ApiToken, OneTimePurpose, OneTimeToken, Role, TokenKind, User
from digi_core.names import check_password_rules, normalize_email, validate_email

if TYPE_CHECKING:
    from digi_core.config import Settings

log = logging.getLogger(__name__)

API_TOKEN_PREFIX = "digi_"
SESSION_TOKEN_PREFIX = "digis_"
SESSION_LIFETIME = timedelta(days=30)
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
ADMIN_PASSWORD_LIFETIME = timedelta(hours=24)
ONE_TIME_LIFETIME = {
    OneTimePurpose.VERIFY_EMAIL: timedelta(hours=48),
    OneTimePurpose.RESET_PASSWORD: timedelta(hours=1),
}
# Only the last use is recorded this often, so reads don't turn into a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

hasher = PasswordHasher()  # argon2id with the library's recommended parameters
# Verified against when the email is unknown, so a failure costs the same either way.
_UNKNOWN_USER_HASH = hasher.hash(secrets.token_urlsafe(16))


def now() -> datetime:
    return datetime.now(UTC)


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(email: str, password: str, name: str = "", *, role: Role = Role.USER) -> User:
    """A new account; CONFLICT when the (normalised) email is taken."""
    email = validate_email(email)
    check_password_rules(password, email=email)
    if len(name) > 100:
        raise BadUserInput("name must be at most 100 characters", field="name")
    if await User.exists(email=email):
        raise Conflict(f"an account with {email} exists already: sign in instead", field="email")
    return await User.create(
        email=email,
        name=name.strip(),
        role=role,
        password_hash=await _hash(password),
        password_changed_at=now(),
    )


async def sign_in(email: str, password: str) -> User:
    """The user whose password this is, or UNAUTHENTICATED, taking the same time either way.

    Repeated failures lock the account for LOCKOUT; a suspended account cannot sign in.
    """
    try:
        email = validate_email(email)
    except BadUserInput:
        email = ""
    user = await User.get_or_none(email=email) if email else None
    valid = await _verify(
        user.password_hash if user and user.password_hash else _UNKNOWN_USER_HASH, password
    )
    if user is None:
        raise Unauthenticated("wrong email or password")
    if user.locked_until and user.locked_until > now():
        seconds = int((user.locked_until - now()).total_seconds()) + 1
        raise RateLimited(
            f"too many failed sign-ins: this account is locked, try again in {seconds} s",
            retry_after_seconds=seconds,
        )
    if not valid:
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now() + LOCKOUT
            user.failed_logins = 0
            log.warning("account %s locked after %d failed sign-ins", user.email, MAX_FAILED_LOGINS)
        await user.save(update_fields=["failed_logins", "locked_until", "updated_at"])
        raise Unauthenticated("wrong email or password")
    if user.suspended_at:
        raise Unauthenticated("this account is suspended: contact the platform's operator")
    if user.failed_logins or user.locked_until:
        user.failed_logins = 0
        user.locked_until = None
        await user.save(update_fields=["failed_logins", "locked_until", "updated_at"])
    return user


async def issue_token(
    secret: str,
    user: User,
    name: str,
    *,
    kind: TokenKind = TokenKind.API,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the plaintext, which is never stored."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise BadUserInput("a token name needs 1 to 100 characters", field="name")
    if expires_at is not None and expires_at <= now():
        raise BadUserInput("a token cannot expire in the past", field="expiresInDays")
    prefix = API_TOKEN_PREFIX if kind is TokenKind.API else SESSION_TOKEN_PREFIX
    plaintext = prefix + secrets.token_urlsafe(30)
    token = await ApiToken.create(
        user=user,
        kind=kind,
        name=name,
        token_hash=token_hash(secret, plaintext),
        prefix=plaintext[: len(prefix) + 6],
        expires_at=expires_at,
    )
    return token, plaintext


async def authenticate(secret: str, plaintext: str) -> tuple[User, ApiToken]:
    """The user and token behind a bearer token or session cookie, or UNAUTHENTICATED."""
    token = await ApiToken.get_or_none(token_hash=token_hash(secret, plaintext)).select_related(
        "user"
    )
    moment = now()
    if token is None or token.revoked_at is not None:
        raise Unauthenticated("this token is not valid: sign in again (digi login)")
    if token.expires_at is not None and token.expires_at <= moment:
        raise Unauthenticated("this token has expired: create a new one (digi login)")
    user = token.user
    if user.suspended_at is not None:
        raise Unauthenticated("this account is suspended: contact the platform's operator")
    if token.last_used_at is None or moment - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = moment
        await ApiToken.filter(id=token.id).update(last_used_at=moment)
    return user, token


async def revoke_token(user: User, token_id: int) -> ApiToken:
    token = await ApiToken.get_or_none(id=token_id, user=user, kind=TokenKind.API)
    if token is None:
        raise NotFound(f"you have no API token {token_id}", field="id")
    await revoke(token)
    return token


async def revoke(token: ApiToken) -> None:
    """End one token or session; revoking a revoked one changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = now()
        await token.save(update_fields=["revoked_at"])


async def revoke_all(user: User, *, kind: TokenKind | None = None) -> None:
    query = ApiToken.filter(user=user, revoked_at__isnull=True)
    if kind is not None:
        query = query.filter(kind=kind)
    await query.update(revoked_at=now())


async def issue_one_time_token(secret: str, user: User, purpose: OneTimePurpose) -> str:
    """A single-use token for an email link; earlier unused ones of the same purpose die."""
    await OneTimeToken.filter(user=user, purpose=purpose, used_at__isnull=True).update(
        used_at=now()
    )
    plaintext = secrets.token_urlsafe(32)
    await OneTimeToken.create(
        user=user,
        purpose=purpose,
        token_hash=token_hash(secret, plaintext),
        expires_at=now() + ONE_TIME_LIFETIME[purpose],
    )
    return plaintext


async def use_one_time_token(secret: str, plaintext: str, purpose: OneTimePurpose) -> User:
    """The user of a valid, unused, unexpired token, marking it used; else BAD_USER_INPUT."""
    moment = now()
    used = await OneTimeToken.filter(
        token_hash=token_hash(secret, plaintext),
        purpose=purpose,
        used_at__isnull=True,
        expires_at__gt=moment,
    ).update(used_at=moment)
    if used != 1:  # the conditional update is the single-use guarantee, even under races
        raise BadUserInput(
            "this link is invalid, used or expired: ask for a new one", field="token"
        )
    token = await OneTimeToken.get(token_hash=token_hash(secret, plaintext)).select_related("user")
    return token.user


async def verify_email(secret: str, plaintext: str) -> User:
    user = await use_one_time_token(secret, plaintext, OneTimePurpose.VERIFY_EMAIL)
    if user.email_verified_at is None:
        user.email_verified_at = now()
        await user.save(update_fields=["email_verified_at", "updated_at"])
    return user


async def reset_password(secret: str, plaintext: str, new_password: str) -> User:
    """Sets the new password and ends every browser session (API tokens stay: revoke them
    one by one, since scripts and CI hold them)."""
    user = await use_one_time_token(secret, plaintext, OneTimePurpose.RESET_PASSWORD)
    await set_password(user, new_password)
    await revoke_all(user, kind=TokenKind.SESSION)
    return user


async def set_password(user: User, password: str) -> None:
    check_password_rules(password, email=user.email)
    user.password_hash = await _hash(password)
    user.password_changed_at = now()
    user.failed_logins = 0
    user.locked_until = None
    await user.save(
        update_fields=[
            "password_hash",
            "password_changed_at",
            "failed_logins",
            "locked_until",
            "updated_at",
        ]
    )


def new_password() -> str:
    return secrets.token_urlsafe(18)


async def seed_admin(email: str, name: str) -> tuple[User, str]:
    """A new admin and its initial password (shown once, never stored)."""
    password = new_password()
    user = await create_user(email, password, name, role=Role.ADMIN)
    user.email_verified_at = now()
    await user.save(update_fields=["email_verified_at"])
    return user, password


async def rotate_admin_passwords() -> int:
    """Give every admin whose password is older than a day a new one, logged at WARNING."""
    cutoff = now() - ADMIN_PASSWORD_LIFETIME
    admins = await User.filter(
        Q(password_changed_at__lt=cutoff) | Q(password_changed_at__isnull=True), role=Role.ADMIN
    )
    for admin in admins:
        password = new_password()
        await set_password(admin, password)
        log.warning(
            "rotated the password of admin %s; the new password is: %s", admin.email, password
        )
    return len(admins)


async def delete_account(user: User) -> None:
    """Erase what identifies the user; the row stays for the audit log and retired slugs."""
    await ApiToken.filter(user=user).delete()
    await OneTimeToken.filter(user=user).delete()
    moment = now()
    user.email = f"deleted-{user.id}@users.invalid"
    user.name = ""
    user.password_hash = None
    user.stripe_customer_id = None
    user.stripe_subscription_id = None
    user.suspended_at = user.suspended_at or moment
    user.deleted_at = moment
    await user.save()


async def send_verification_email(settings: Settings, mailer: Mailer, user: User) -> None:
    token = await issue_one_time_token(settings.secret_value, user, OneTimePurpose.VERIFY_EMAIL)
    hours = _hours(ONE_TIME_LIFETIME[OneTimePurpose.VERIFY_EMAIL])
    subject, text = verification_email(settings.base_url, token, valid_hours=hours)
    await _send(mailer, user.email, subject, text)


async def send_password_reset_email(settings: Settings, mailer: Mailer, email: str) -> None:
    """Mail a reset link when the email has an active account; silently nothing otherwise,
    so the answer never tells whether an account exists."""
    user = await User.get_or_none(email=normalize_email(email), suspended_at__isnull=True)
    if user is None:
        return
    token = await issue_one_time_token(settings.secret_value, user, OneTimePurpose.RESET_PASSWORD)
    hours = _hours(ONE_TIME_LIFETIME[OneTimePurpose.RESET_PASSWORD])
    subject, text = password_reset_email(settings.base_url, token, valid_hours=hours)
    await _send(mailer, user.email, subject, text)


async def _send(mailer: Mailer, to: str, subject: str, text: str) -> None:
    # A mail server that is down must not undo a sign-up or tell which emails exist:
    # the operator reads why in the log, and the user can ask for the mail again.
    try:
        await mailer.send(to, subject, text)
    except MailError as error:
        log.error("could not send %r to %s: %s", subject, to, error)


def _hours(lifetime: timedelta) -> int:
    return int(lifetime.total_seconds() // 3600)
