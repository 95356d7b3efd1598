"""The audit log: who did what to what, from where, and how it ended."""

from __future__ import annotations

import logging
from typing import Any

from digi_core.models import AuditLog, AuditOutcome, User

log = logging.getLogger(__name__)


async def record(
    action: str,
    *,
    actor: User | None,
    outcome: AuditOutcome,
    ip: str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditLog:
    entry = await AuditLog.create(
        action=action,
        actor=actor,
        actor_email=actor.email if actor else None,
        outcome=outcome,
        ip=ip,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        metadata=metadata or {},
    )
    log.info(
        "audit %s by %s on %s:%s: %s",
        action,
        actor.email if actor else "anonymous",
        target_type,
        target_id,
        outcome.value,
    )
    return entry
