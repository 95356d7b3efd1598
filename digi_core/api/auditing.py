"""Every mutation writes an audit log entry: actor, action, target, IP, time and outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension

from digi_core import audit
from digi_core.errors import DigiError
from digi_core.models import AuditOutcome

# The argument that names a mutation's target, by target type, in resolver (snake_case) names.
# Not ``name``: names are not unique (createService's target is the id of the service it made).
TARGET_ARGUMENTS = ("id", "service_id", "user_id", "job_id", "deployment_id", "code")


class Audited(FieldExtension):
    def __init__(self, target_type: str | None) -> None:
        self.target_type = target_type

    async def resolve_async(
        self,
        next_: Callable[..., Awaitable[Any]],
        source: Any,
        info: strawberry.Info,
        **kwargs: Any,
    ) -> Any:
        context = info.context
        action = info.field_name
        target_id = next((kwargs[name] for name in TARGET_ARGUMENTS if kwargs.get(name)), None)
        try:
            result = await next_(source, info, **kwargs)
        except Exception as error:
            code = error.code if isinstance(error, DigiError) else "INTERNAL"
            metadata = {**context.audit_metadata, "code": code}
            await self._record(context, action, target_id, AuditOutcome.FAILURE, metadata)
            raise
        if target_id is None:
            target_id = getattr(result, "id", None) or getattr(context.audit_actor, "id", None)
        await self._record(context, action, target_id, AuditOutcome.SUCCESS, context.audit_metadata)
        return result

    async def _record(
        self,
        context: Any,
        action: str,
        target_id: object,
        outcome: AuditOutcome,
        metadata: dict[str, Any],
    ) -> None:
        try:
            actor = context.audit_actor or await context.current_user()
        except DigiError:
            actor = None  # an invalid token is itself the failure being recorded
        await audit.record(
            action,
            actor=actor,
            outcome=outcome,
            ip=context.ip,
            target_type=self.target_type,
            target_id=None if target_id is None else str(target_id),
            metadata=metadata,
        )


def mutation(target_type: str | None, **kwargs: Any) -> Any:
    """``strawberry.mutation`` that audits itself; ``target_type`` names what it acts on."""
    return strawberry.mutation(extensions=[Audited(target_type)], **kwargs)
