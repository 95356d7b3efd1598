"""What a plan gives a user's services beyond container limits: the disk of each VM."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from digi_core.config import Settings
from digi_core.errors import BadUserInput, DigiError
from digi_core.models import Plan, Service, User

if TYPE_CHECKING:
    from digi_core.deploys.shared import Deps

log = logging.getLogger(__name__)

MAX_STORAGE_BLOCKS = 64


def check_storage_blocks(blocks: int, field: str) -> int:
    """``blocks`` extra storage blocks, refused (naming ``field``) beyond what a user may have."""
    if not 0 <= blocks <= MAX_STORAGE_BLOCKS:
        raise BadUserInput(f"{field} must be 0-{MAX_STORAGE_BLOCKS}", field=field)
    return blocks


def vm_storage_gb(user: User, settings: Settings) -> int:
    """The disk each of ``user``'s VMs should have: the plan's size plus the extra blocks."""
    base = settings.pro_storage_gb if user.plan is Plan.PRO else settings.free_storage_gb
    return base + settings.storage_block_gb * max(user.extra_storage_blocks, 0)


async def grow_disks(deps: Deps, user: User) -> None:
    """Grow each of the user's VMs to what the plan now gives (never shrink). A failure is
    logged: the reconciler's compute repair grows it on a later pass."""
    size = vm_storage_gb(user, deps.settings)
    services = Service.filter(owner=user, deleted_at__isnull=True, host_id__isnull=False)
    for service in await services:
        try:
            await deps.compute.grow_storage(service, size)
        except DigiError as error:
            log.warning("the disk of %s stays as it is for now: %s", service.slug, error.message)
