"""Typed errors that users see, each with a stable code and a message saying what to do next."""

from __future__ import annotations

from typing import ClassVar


class DigiError(Exception):
    """An error meant for the user: ``code`` is stable, ``message`` says what to do next.

    The code is mapped once to GraphQL ``extensions.code``, an HTTP status and a CLI exit code.
    """

    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # graphql-core copies an original error's ``extensions`` dict onto the GraphQL error.
        self.extensions: dict[str, str] = {"code": self.code}
        if field:
            self.extensions["field"] = field


class Unauthenticated(DigiError):
    code = "UNAUTHENTICATED"
    http_status = 401
    exit_code = 3


class Forbidden(DigiError):
    code = "FORBIDDEN"
    http_status = 403
    exit_code = 3


class NotFound(DigiError):
    code = "NOT_FOUND"
    http_status = 404
    exit_code = 4


class BadUserInput(DigiError):
    code = "BAD_USER_INPUT"
    http_status = 400
    exit_code = 2


class PlanLimit(DigiError):
    code = "PLAN_LIMIT"
    http_status = 402
    exit_code = 5


class NotConfigured(DigiError):
    code = "NOT_CONFIGURED"
    http_status = 501
    exit_code = 6


class Conflict(DigiError):
    code = "CONFLICT"
    http_status = 409
    exit_code = 7


class RateLimited(DigiError):
    code = "RATE_LIMITED"
    http_status = 429
    exit_code = 8

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.extensions["retryAfter"] = str(retry_after_seconds)


class NotBuiltYet(NotConfigured):
    """A provider method that its plugin does not implement yet: never a fake result."""

    def __init__(self, provider: str, method: str) -> None:
        super().__init__(
            f"{provider}: {method} is not implemented yet in this version of Digi; "
            "choose another provider or upgrade Digi."
        )


class ConfigError(DigiError):
    """Invalid configuration: one line per problem, each naming its variable."""

    code = "CONFIG"
    exit_code = 78  # EX_CONFIG from sysexits.h

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


ALL_ERRORS: tuple[type[DigiError], ...] = (
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    PlanLimit,
    NotConfigured,
    Conflict,
    RateLimited,
)
