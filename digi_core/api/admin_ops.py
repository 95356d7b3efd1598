"""GraphQL operations for the platform's admins: users, the audit log, servers and nodes."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import strawberry
from tortoise.expressions import Q

from digi_core import accounts, services
from digi_core.api.auditing import mutation
from digi_core.api.context import Info, page_limit, page_offset
from digi_core.api.types import (
    AuditLog,
    Page,
    PlanEnum,
    Server,
    StatsSample,
    Timeframe,
    User,
    VmStats,
)
from digi_core.deploys import routing
from digi_core.deploys.containers import teardown_service
from digi_core.errors import BadUserInput, Conflict, NotConfigured, NotFound
from digi_core.models import AuditLog as AuditLogRow
from digi_core.models import Plan
from digi_core.models import Service as ServiceRow
from digi_core.models import User as UserRow
from digi_core.names import record_id, validate_label
from digi_core.plans import check_storage_blocks, grow_disks
from digi_core.providers import ComputeProvider


async def _target_user(
    info: Info, user_id: strawberry.ID, *, allow_self: bool = False
) -> tuple[UserRow, UserRow]:
    admin = await info.context.require_admin()
    user = await UserRow.get_or_none(id=record_id(user_id, "user"), deleted_at__isnull=True)
    if user is None:
        raise NotFound(f"no user {user_id}", field="id")
    if user.id == admin.id and not allow_self:
        raise Conflict("admins cannot do this to their own account", field="id")
    return admin, user


async def _reroute(info: Info, user: UserRow) -> None:
    for service in await ServiceRow.filter(owner=user, deleted_at__isnull=True):
        await routing.refresh_routes(info.context.deploy_deps, service)


def _proxmox(info: Info) -> ComputeProvider:
    """The proxmox provider, when it is the one in use (its nodes serve nothing otherwise)."""
    settings = info.context.settings
    if settings.compute != "proxmox":
        raise NotConfigured(
            f"this server places services with DIGI_COMPUTE={settings.compute}: set "
            "DIGI_COMPUTE=proxmox to use Proxmox VE nodes"
        )
    return info.context.registry.get(ComputeProvider, "proxmox")


@strawberry.input
class ProxmoxNodeInput:
    name: str
    api_url: str
    token_id: str = strawberry.field(description="user@realm!tokenid")
    token_secret: str
    node: str
    template_vm_id: int
    storage: str = "local-lvm"
    bridge: str = "vmbr0"
    full_clone: bool = False
    max_vms: int | None = None
    max_memory_mb: int | None = None

    def validate(self) -> None:
        try:
            validate_label(self.name, what="name")
        except ValueError as error:
            raise BadUserInput(str(error), field="name") from None
        url = urlsplit(self.api_url)
        if url.scheme != "https" or not url.hostname:
            raise BadUserInput("apiUrl must be https://host:8006", field="apiUrl")
        user, _, token = self.token_id.partition("!")
        if "@" not in user or not token:
            raise BadUserInput("tokenId must look like user@realm!tokenid", field="tokenId")
        if not 100 <= self.template_vm_id <= 999_999_999:
            raise BadUserInput("templateVmId must be a VM id (100 or more)", field="templateVmId")
        for field_name, value in (
            ("node", self.node),
            ("storage", self.storage),
            ("bridge", self.bridge),
        ):
            if not value or not all(c.isalnum() or c in "-_." for c in value) or len(value) > 64:
                raise BadUserInput(f"{field_name} must be a Proxmox name", field=field_name)


@strawberry.type
class AdminQuery:
    @strawberry.field(description="Users, searched by email or name, newest first (admins only).")
    async def users(
        self, info: Info, search: str | None = None, offset: int = 0, limit: int = 20
    ) -> Page[User]:
        await info.context.require_admin()
        query = UserRow.filter(deleted_at__isnull=True)
        if search:
            query = query.filter(Q(email__icontains=search[:64]) | Q(name__icontains=search[:64]))
        total = await query.count()
        rows = (
            await query.order_by("-created_at", "-id")
            .offset(page_offset(offset))
            .limit(page_limit(limit))
        )
        return Page(items=[User.of(r) for r in rows], total_count=total, offset=offset, limit=limit)

    @strawberry.field(description="The audit log, newest first, filtered (admins only).")
    async def audit_logs(
        self,
        info: Info,
        actor_id: strawberry.ID | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[AuditLog]:
        await info.context.require_admin()
        query = AuditLogRow.all()
        if actor_id is not None:
            query = query.filter(actor_id=int(actor_id) if actor_id.isdigit() else -1)
        if action:
            query = query.filter(action=action)
        if target_type:
            query = query.filter(target_type=target_type)
        if target_id:
            query = query.filter(target_id=target_id)
        if since:
            query = query.filter(created_at__gte=since)
        if until:
            query = query.filter(created_at__lt=until)
        total = await query.count()
        rows = (
            await query.order_by("-created_at", "-id")
            .offset(page_offset(offset))
            .limit(page_limit(limit))
        )
        return Page(
            items=[AuditLog.of(r) for r in rows], total_count=total, offset=offset, limit=limit
        )

    @strawberry.field(
        description="Compute nodes and hosts with status and resources (admins only)."
    )
    async def servers(self, info: Info) -> list[Server]:
        await info.context.require_admin()
        provider = info.context.registry.get(ComputeProvider, info.context.settings.compute)
        return [Server.of(host) for host in await provider.hosts()]

    @strawberry.field(description="CPU, memory, disk and network series of a VM (admins only).")
    async def vm_stats(
        self, info: Info, vm_id: str, timeframe: Timeframe = Timeframe.HOUR
    ) -> VmStats:
        await info.context.require_admin()
        provider = info.context.registry.get(ComputeProvider, info.context.settings.compute)
        points = await provider.host_stats(vm_id, timeframe.value)
        return VmStats(
            vm_id=vm_id, timeframe=timeframe, samples=[StatsSample.of(p) for p in points]
        )


@strawberry.type
class AdminMutation:
    @mutation("user", description="Suspend a user: their tokens and sessions stop at once.")
    async def suspend_user(self, info: Info, id: strawberry.ID) -> User:
        _, user = await _target_user(info, id)
        if user.suspended_at is None:
            user.suspended_at = datetime.now(UTC)
            await user.save(update_fields=["suspended_at", "updated_at"])
        await _reroute(info, user)  # their apps answer "suspended"
        return User.of(user)

    @mutation("user", description="Lift a user's suspension.")
    async def unsuspend_user(self, info: Info, id: strawberry.ID) -> User:
        _, user = await _target_user(info, id)
        user.suspended_at = None
        await user.save(update_fields=["suspended_at", "updated_at"])
        await _reroute(info, user)
        return User.of(user)

    @mutation(
        "user",
        description="Set a user's plan, and their extra storage blocks on Pro (admins only; "
        "what billing does when they pay): their VMs' disks grow to what the plan gives at "
        "once (never shrink), and their next deploys get the plan's container limits.",
    )
    async def set_user_plan(
        self,
        info: Info,
        id: strawberry.ID,
        plan: PlanEnum,  # type: ignore[valid-type]
        extra_storage_blocks: int | None = None,
    ) -> User:
        _, user = await _target_user(info, id, allow_self=True)
        blocks = user.extra_storage_blocks if extra_storage_blocks is None else extra_storage_blocks
        if Plan(plan) is Plan.FREE:
            if extra_storage_blocks:
                raise BadUserInput(
                    "extra storage blocks need the Pro plan", field="extraStorageBlocks"
                )
            blocks = 0
        user.extra_storage_blocks = check_storage_blocks(blocks, "extraStorageBlocks")
        user.plan = Plan(plan)
        await user.save(update_fields=["plan", "extra_storage_blocks", "updated_at"])
        await grow_disks(info.context.deploy_deps, user)
        return User.of(user)

    @mutation(
        "user",
        description="Delete a user and their services; the audit log keeps its entries. "
        "Answers what was removed.",
    )
    async def delete_user(self, info: Info, id: strawberry.ID) -> list[str]:
        _, user = await _target_user(info, id)
        removed = []
        for service in await services.visible_services(user).filter(owner=user):
            removed += await services.delete_service(service)
            # As deleteService does: nothing of theirs keeps running, serving or costing.
            removed += await teardown_service(info.context.deploy_deps, info.context.jobs, service)
        await accounts.delete_account(user)
        return [f"user {id}", *removed]

    @mutation(
        "node",
        description="Add a Proxmox VE node (admins only): the token, node and template are "
        "checked against its API first.",
    )
    async def add_proxmox_node(self, info: Info, input: ProxmoxNodeInput) -> Server:
        await info.context.require_admin()
        input.validate()
        options = {
            "api_url": input.api_url,
            "token_id": input.token_id,
            "token_secret": input.token_secret,
            "node": input.node,
            "template_vm_id": input.template_vm_id,
            "storage": input.storage,
            "bridge": input.bridge,
            "full_clone": input.full_clone,
            "max_vms": input.max_vms,
            "max_memory_mb": input.max_memory_mb,
        }
        return Server.of(await _proxmox(info).add_node(input.name, options))

    @mutation(
        "node",
        description="Remove a Proxmox VE node that hosts no VMs (admins only); one that "
        "still does is refused and gets no new VMs (drained).",
    )
    async def remove_proxmox_node(self, info: Info, id: strawberry.ID) -> bool:
        await info.context.require_admin()
        await _proxmox(info).remove_node(str(id))
        return True
