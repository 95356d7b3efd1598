"""The Proxmox VE compute provider: a VM per service, cloned from a template, reached over SSH.

Provisioning is a row in ``hosts`` moved step by step (node, VM id, clone, cloud-init, disk,
start, address, SSH); each step is written down before and after, so a worker that dies
mid-way leaves a row the next one continues from. A provision that fails destroys the VM it
made (only a VM carrying this host's marker) and its row; ``repair`` finds VMs without rows,
rows without VMs and disks smaller than the plan's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError

from digi_core.errors import DigiError, NotConfigured, NotFound
from digi_core.models import Deployment, DeploymentStatus, HostStatus
from digi_core.models import Host as HostRow
from digi_core.models import Service as ServiceRow
from digi_core.plans import vm_storage_gb
from digi_core.providers import ComputeProvider, Host, LogSink, StatsPoint
from digi_core.providers import HostStatus as HostView
from digi_core.ssh import (
    KEY_FILE,
    HostKeyChanged,
    SshPool,
    SshTarget,
    platform_key,
    public_key_line,
)
from digi_proxmox.client import ProxmoxClient, ProxmoxError, TaskFailed, VmMissing
from digi_proxmox.nodes import LIVE, PROVIDER, Node, Nodes

if TYPE_CHECKING:
    import asyncssh

    from digi_core.config import Settings
    from digi_core.models import Service

log = logging.getLogger(__name__)

DISK = "scsi0"
DELETION_GRACE = timedelta(minutes=10)
TIMEFRAMES = {"hour", "day", "week", "month", "year"}


class ProvisionFailed(DigiError):
    code = "PROVISION_FAILED"
    http_status = 502


def host_id(row: HostRow) -> str:
    return f"proxmox-{row.external_id}"


def _disk_gb(config: dict[str, Any]) -> int:
    """The size of the VM's disk in whole GB, from ``scsi0: storage:vm-1-disk-0,size=10G``."""
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)", str(config.get(DISK, "")))
    if match is None:
        return 0
    factor = {"K": 1 / 2**20, "M": 1 / 2**10, "G": 1, "T": 2**10, "": 1 / 2**30}
    return int(float(match.group(1)) * factor[match.group(2)])


class ProxmoxCompute(ComputeProvider):
    name = "proxmox"
    agent_poll_seconds = 1.0
    lease_seconds = 30.0
    """A provisioning row untouched this long has lost its worker: another may take over
    (DIGI_WORKER_STALE_AFTER, as for a deploy's rows)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._nodes: Nodes | None = None
        self._pool: SshPool | None = None
        self._key: asyncssh.SSHKey | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._provisioning: set[int] = set()  # host rows this process is making now

    # Lifecycle

    async def start(self, settings: Settings) -> None:
        if self._pool is not None:
            return
        self._settings = settings
        self.lease_seconds = settings.worker_stale_after
        self._nodes = Nodes(settings)
        key_file = settings.ssh_key_file or settings.data_dir / KEY_FILE
        self._key = await asyncio.to_thread(platform_key, key_file)
        self._pool = SshPool(self._key)
        if settings.proxmox_url:
            await self._add_first_node(settings)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _add_first_node(self, settings: Settings) -> None:
        """The node that PROXMOX_* names, added once (it is then an ordinary node)."""
        from digi_core.models import ComputeNode

        name = settings.proxmox_node or "pve"
        if await ComputeNode.exists(name=name):
            return
        missing = [
            variable
            for variable, value in (
                ("PROXMOX_TOKEN_ID", settings.proxmox_token_id),
                ("PROXMOX_TOKEN_SECRET", settings.proxmox_token_secret),
                ("PROXMOX_NODE", settings.proxmox_node),
                ("PROXMOX_TEMPLATE_ID", settings.proxmox_template_id),
            )
            if not value
        ]
        if missing:
            log.error("PROXMOX_URL is set but not %s: no node added", ", ".join(missing))
            return
        assert settings.proxmox_token_secret is not None
        try:
            await self.nodes.add(
                name,
                {
                    "api_url": settings.proxmox_url,
                    "token_id": settings.proxmox_token_id,
                    "token_secret": settings.proxmox_token_secret.get_secret_value(),
                    "node": settings.proxmox_node,
                    "template_vm_id": settings.proxmox_template_id,
                    "storage": settings.proxmox_storage,
                    "bridge": settings.proxmox_bridge,
                },
            )
        except DigiError as error:
            log.error("the Proxmox node from PROXMOX_* could not be added: %s", error.message)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("ProxmoxCompute.start() was not called")
        return self._settings

    @property
    def nodes(self) -> Nodes:
        if self._nodes is None:
            raise RuntimeError("ProxmoxCompute.start() was not called")
        return self._nodes

    @property
    def pool(self) -> SshPool:
        if self._pool is None:
            raise RuntimeError("ProxmoxCompute.start() was not called")
        return self._pool

    def _lock(self, service_id: int) -> asyncio.Lock:
        return self._locks.setdefault(service_id, asyncio.Lock())

    # Hosts of services

    async def host_for_service(self, service: Service, log: LogSink) -> Host:
        async with self._lock(service.id):
            row = await self._row_of(service) or await self._claim(service)
            if row.id not in self._provisioning:
                row = await self._wait_for_other_worker(row, service, log)
            if row.status is not HostStatus.READY:
                await self._provision(row, service, log)
            return await self._connect(row)

    async def _wait_for_other_worker(self, row: HostRow, service: Service, log: LogSink) -> HostRow:
        """A VM another process is making (its heartbeat is fresh) is waited for; one whose
        maker went silent is taken over."""
        told = False
        while row.status is HostStatus.PROVISIONING and row.updated_at > datetime.now(
            UTC
        ) - timedelta(seconds=self.lease_seconds):
            if not told:
                await log("another worker is making this service's VM: waiting for it")
                told = True
            await asyncio.sleep(min(1.0, self.lease_seconds / 4))
            fresh = await HostRow.get_or_none(id=row.id)
            if fresh is None:
                raise ProvisionFailed(
                    f"making a VM for {service.name} failed in another worker: deploy again"
                )
            row = fresh
        return row

    async def existing_host(self, service: Service) -> Host | None:
        row = await self._row_of(service)
        if row is None or row.status is not HostStatus.READY:
            return None
        return await self._connect(row)

    async def _row_of(self, service: Service) -> HostRow | None:
        ids = await ServiceRow.filter(id=service.id).values_list("host_id", flat=True)
        if not ids or ids[0] is None:
            return None
        return await HostRow.get_or_none(
            id=ids[0],
            provider=PROVIDER,
            status__in=[HostStatus.PROVISIONING, HostStatus.READY, HostStatus.UNREACHABLE],
        )

    async def _claim(self, service: Service) -> HostRow:
        """A row for the service's VM; the service points at it before anything is made.
        The row is this process's to make (``_provisioning``) unless another claimed first."""
        row = await HostRow.create(
            provider=PROVIDER,
            external_id=f"pending-{service.id}-{secrets.token_hex(4)}",
            name=f"digi-{service.slug}"[:63],
            status=HostStatus.PROVISIONING,
            state={},
        )
        if not await ServiceRow.filter(id=service.id, host_id__isnull=True).update(host_id=row.id):
            await row.delete()  # another process claimed it first: continue theirs
            theirs = await self._row_of(service)
            if theirs is None:
                raise ProvisionFailed(f"{service.name} is being given a VM already: try again")
            return theirs
        self._provisioning.add(row.id)
        return row

    async def _connect(self, row: HostRow) -> Host:
        settings = self.settings
        admin_host, _, admin_port = settings.host_caddy_admin.rpartition(":")

        async def pin(line: str) -> None:
            await HostRow.filter(id=row.id).update(ssh_host_key=line)
            row.ssh_host_key = line

        target = SshTarget(
            address=str(row.address),
            port=settings.vm_ssh_port,
            username=settings.vm_user,
            host_key=row.ssh_host_key,
            docker_socket=settings.host_docker_socket,
            caddy_admin=(admin_host, int(admin_port)),
        )
        return await self.pool.host(
            host_id(row), target, f"{row.address}:{settings.http_port}", pin
        )

    # Provisioning

    def _marker(self, row: HostRow) -> str:
        return f"digi host {row.id} of installation {self.settings.installation_id}"

    async def _provision(self, row: HostRow, service: Service, log: LogSink) -> None:
        self._provisioning.add(row.id)
        heartbeat = asyncio.create_task(self._heartbeat(row.id))
        try:
            await self._steps(row, service, log)
        except Exception as error:  # not CancelledError: a worker stopping leaves it resumable
            reason = error.message if isinstance(error, DigiError) else repr(error)
            await log(f"making the VM failed: {reason}")
            await log("removing what was made")
            await self._discard(row)
            raise ProvisionFailed(f"could not make a VM for {service.name}: {reason}") from None
        finally:
            heartbeat.cancel()
            self._provisioning.discard(row.id)

    async def _heartbeat(self, row_id: int) -> None:
        """Tells other processes this one is still making the VM (a clone may take minutes)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await HostRow.filter(id=row_id).update(updated_at=datetime.now(UTC))

    async def _steps(self, row: HostRow, service: Service, log: LogSink) -> None:
        settings = self.settings
        state: dict[str, Any] = dict(row.state)

        async def save(*fields: str) -> None:
            row.state = state
            await row.save(update_fields=["state", "updated_at", *fields])

        if row.node_id is None:  # type: ignore[attr-defined]
            picked = await self.nodes.pick(settings.vm_memory_mb)
            row.node_id = picked.row.id
            await save("node_id")
            await log(f"placing the VM on Proxmox node {picked.row.name}")
        node = await self.nodes.get(row.node_id)  # type: ignore[attr-defined]
        client = self.nodes.client(node)
        if not row.external_id.isdigit():
            await self._take_vmid(row, client)
        vmid = int(row.external_id)
        await self._clone(row, node, client, vmid, state, save, log)
        if not state.get("configured"):
            await log("setting cloud-init: user, the platform's SSH key, DHCP")
            await client.set_config(
                node.name,
                vmid,
                ciuser=settings.vm_user,
                sshkeys=public_key_line(self._platform_key()),
                ipconfig0="ip=dhcp",
                agent=1,
                cores=settings.vm_cores,
                memory=settings.vm_memory_mb,
            )
            state["configured"] = True
            await save()
        owner = await ServiceRow.get(id=service.id).prefetch_related("owner")
        await self._grow(row, node, client, vm_storage_gb(owner.owner, settings), log)
        status = await client.vm_status(node.name, vmid)
        if status.get("status") != "running":
            await log(f"starting VM {vmid}")
            upid = await client.power(node.name, vmid, "start")
            await client.wait_task(
                node.name, upid, f"start VM {vmid}", settings.proxmox_task_timeout
            )
        deadline = time.monotonic() + settings.proxmox_boot_timeout
        address = await self._wait_for_address(client, node, vmid, deadline)
        if row.address != address:
            row.address = address
            await save("address")
        await log(f"VM {vmid} has address {address}; connecting over SSH")
        host = await self._wait_for_ssh(row, deadline)
        await host.docker.version()
        row.status = HostStatus.READY
        await save("status")
        await log(f"VM {vmid} is ready")

    def _platform_key(self) -> asyncssh.SSHKey:
        if self._key is None:
            raise RuntimeError("ProxmoxCompute.start() was not called")
        return self._key

    async def _take_vmid(self, row: HostRow, client: ProxmoxClient) -> None:
        """Written down before the clone, so nothing Digi makes is without its row."""
        for _ in range(5):
            vmid = await client.next_id()
            row.external_id = str(vmid)
            try:
                await row.save(update_fields=["external_id", "updated_at"])
                return
            except IntegrityError:  # another row took it a moment ago
                await asyncio.sleep(0.2)
        raise ProvisionFailed("no free VM id could be taken: try again")

    async def _clone(
        self,
        row: HostRow,
        node: Node,
        client: ProxmoxClient,
        vmid: int,
        state: dict[str, Any],
        save: Any,
        log: LogSink,
    ) -> None:
        if state.get("cloned"):
            return
        template = int(node.option("template_vm_id"))
        what = f"clone template {template} into VM {vmid}"
        upid = state.get("clone_upid")
        if upid is None:
            existing = await self._config_or_none(client, node, vmid)
            if existing is not None and self._marker(row) not in str(
                existing.get("description", "")
            ):
                # The id was taken by someone else between nextid and here: take another.
                row.external_id = f"pending-{row.id}-{secrets.token_hex(4)}"
                await save("external_id")
                raise ProxmoxError(f"VM id {vmid} was taken by another VM meanwhile")
            if existing is None:
                full = bool(node.option("full_clone", False))
                params: dict[str, Any] = {
                    "name": row.name,
                    "full": int(full),
                    "description": self._marker(row),
                }
                if full:
                    params["storage"] = node.option("storage")
                await log(f"cloning template {template} into VM {vmid} on {node.name}")
                upid = await client.clone(node.name, template, vmid, **params)
                state["clone_upid"] = upid
                await save()
        if upid is not None:
            await client.wait_task(node.name, upid, what, self.settings.proxmox_task_timeout)
        else:  # made by a worker that stopped before writing the task down
            await self._wait_unlocked(client, node, vmid, what)
        state["cloned"] = True
        await save()

    async def _wait_unlocked(self, client: ProxmoxClient, node: Node, vmid: int, what: str) -> None:
        deadline = time.monotonic() + self.settings.proxmox_task_timeout
        while "lock" in await client.vm_config(node.name, vmid):
            if time.monotonic() > deadline:
                raise TaskFailed(f"Proxmox VE did not {what} in time (VM {vmid} stays locked)")
            await asyncio.sleep(0.5)

    async def _config_or_none(
        self, client: ProxmoxClient, node: Node, vmid: int
    ) -> dict[str, Any] | None:
        try:
            return await client.vm_config(node.name, vmid)
        except VmMissing:
            return None

    async def _grow(
        self, row: HostRow, node: Node, client: ProxmoxClient, wanted_gb: int, log: LogSink
    ) -> bool:
        vmid = int(row.external_id)
        current = _disk_gb(await client.vm_config(node.name, vmid))
        grown = current < wanted_gb
        if grown:
            await log(f"growing VM {vmid}'s disk from {current} GB to {wanted_gb} GB")
            upid = await client.resize(node.name, vmid, DISK, f"{wanted_gb}G")
            if upid is not None:
                await client.wait_task(
                    node.name, upid, f"grow VM {vmid}'s disk", self.settings.proxmox_task_timeout
                )
        size = max(current, wanted_gb)
        if row.storage_gb != size:
            row.storage_gb = size
            await row.save(update_fields=["storage_gb", "updated_at"])
        return grown

    async def _wait_for_address(
        self, client: ProxmoxClient, node: Node, vmid: int, deadline: float
    ) -> str:
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            try:
                address = _address(await client.agent_interfaces(node.name, vmid))
            except ProxmoxError as error:
                address, last_error = None, error.message
            if address is not None:
                return address
            await asyncio.sleep(self.agent_poll_seconds)
        raise TaskFailed(
            f"VM {vmid}'s QEMU guest agent reported no address within "
            f"{self.settings.proxmox_boot_timeout:g} s ({last_error}): check that the template "
            "runs qemu-guest-agent and gets an address by DHCP (DIGI_PROXMOX_BOOT_TIMEOUT)"
        )

    async def _wait_for_ssh(self, row: HostRow, deadline: float) -> Host:
        """sshd comes up after the agent: try until the boot deadline."""
        while True:
            try:
                return await self._connect(row)
            except HostKeyChanged:
                raise
            except DigiError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(self.agent_poll_seconds)

    async def _discard(self, row: HostRow) -> bool:
        """Destroy the row's VM (only if it carries the row's marker), then the row. A VM
        that cannot be destroyed now leaves its row ``failed`` for ``repair`` to retry.
        Answers whether all went."""
        await self.pool.forget(host_id(row))
        await ServiceRow.filter(host_id=row.id).update(host_id=None)
        if row.external_id.isdigit() and row.node_id is not None:  # type: ignore[attr-defined]
            try:
                node = await self.nodes.get(row.node_id)  # type: ignore[attr-defined]
                await self._destroy_vm(row, node, int(row.external_id))
            except DigiError as error:
                log.error("VM %s stays for a later repair: %s", row.external_id, error.message)
                row.status = HostStatus.FAILED
                await row.save(update_fields=["status", "updated_at"])
                return False
        await row.delete()
        return True

    async def _destroy_vm(self, row: HostRow, node: Node, vmid: int) -> None:
        client = self.nodes.client(node)
        config = await self._config_or_none(client, node, vmid)
        if config is None:
            return
        if self._marker(row) not in str(config.get("description", "")):
            log.warning("VM %s is not host %s's: left alone", vmid, row.id)
            return
        timeout = self.settings.proxmox_task_timeout
        if (await client.vm_status(node.name, vmid)).get("status") == "running":
            upid = await client.power(node.name, vmid, "stop")
            await client.wait_task(node.name, upid, f"stop VM {vmid}", timeout)
        upid = await client.destroy(node.name, vmid)
        await client.wait_task(node.name, upid, f"destroy VM {vmid}", timeout)
        log.info("VM %s destroyed", vmid)

    async def release_service(self, service: Service) -> None:
        ids = await ServiceRow.filter(id=service.id).values_list("host_id", flat=True)
        if not ids or ids[0] is None:
            return
        async with self._lock(service.id):
            row = await HostRow.get_or_none(id=ids[0], provider=PROVIDER)
            if row is None:
                return
            row.status = HostStatus.DESTROYING
            await row.save(update_fields=["status", "updated_at"])
            await self._discard(row)

    async def connected_hosts(self) -> list[Host]:
        hosts = []
        for row in await HostRow.filter(provider=PROVIDER, status=HostStatus.READY):
            try:
                hosts.append(await self._connect(row))
            except DigiError as error:
                log.warning("host %s is unreachable: %s", host_id(row), error.message)
        return hosts

    # Storage, nodes, status

    async def grow_storage(self, service: Service, storage_gb: int) -> bool:
        row = await self._row_of(service)
        if row is None or row.status is not HostStatus.READY or row.storage_gb >= storage_gb:
            return False
        node = await self.nodes.get(row.node_id)  # type: ignore[attr-defined]

        async def to_log(line: str) -> None:
            log.info("%s: %s", service.slug, line)

        return await self._grow(row, node, self.nodes.client(node), storage_gb, to_log)

    async def add_node(self, name: str, options: dict[str, Any]) -> HostView:
        node = await self.nodes.add(name, options)
        return await self._node_view(node)

    async def remove_node(self, node_id: str) -> None:
        from digi_core.models import ComputeNode

        name = node_id.removeprefix("node/")
        row = await ComputeNode.get_or_none(provider=PROVIDER, name=name)
        if row is None:
            raise NotFound(f"no Proxmox node {node_id}", field="id")
        await self.nodes.remove(row.id)

    async def _node_view(self, node: Node) -> HostView:
        count = await HostRow.filter(node_id=node.row.id, status__in=LIVE).count()
        view = HostView(
            id=f"node/{node.row.name}",
            provider=self.name,
            name=node.row.name,
            status=HostStatus.UNREACHABLE.value,
            vm_count=count,
        )
        try:
            listed = {str(e.get("node")): e for e in await self.nodes.client(node).nodes()}
        except ProxmoxError as error:
            log.warning("node %s: %s", node.row.name, error.message)
            return view
        entry = listed.get(node.name)
        if entry is not None and entry.get("status") == "online":
            view.status = HostStatus.READY.value
            view.cpu_fraction = float(entry.get("cpu", 0))
            view.cpus = int(entry.get("maxcpu", 0))
            view.memory_bytes = int(entry.get("mem", 0))
            view.memory_total_bytes = int(entry.get("maxmem", 0))
            view.disk_bytes = int(entry.get("disk", 0))
            view.disk_total_bytes = int(entry.get("maxdisk", 0))
        return view

    async def hosts(self) -> list[HostView]:
        """The nodes (``node/<name>``), then each service's VM (by its VM id)."""
        nodes = await self.nodes.all()
        views = [await self._node_view(node) for node in nodes]
        resources: dict[str, dict[str, Any]] = {}
        for node in {node.access: node for node in nodes}.values():
            try:
                for vm in await self.nodes.client(node).cluster_vms():
                    resources[str(vm.get("vmid"))] = vm
            except ProxmoxError as error:
                log.warning("VMs of %s: %s", node.access.api_url, error.message)
        rows = await HostRow.filter(provider=PROVIDER, status__in=LIVE).order_by("id")
        for row in rows:
            vm = resources.get(row.external_id, {})
            views.append(
                HostView(
                    id=row.external_id,
                    provider=self.name,
                    name=row.name,
                    status=row.status.value,
                    cpu_fraction=_number(vm, "cpu", float),
                    cpus=_number(vm, "maxcpu", int),
                    memory_bytes=_number(vm, "mem", int),
                    memory_total_bytes=_number(vm, "maxmem", int),
                    disk_bytes=_number(vm, "disk", int),
                    disk_total_bytes=_number(vm, "maxdisk", int),
                )
            )
        return views

    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        if timeframe not in TIMEFRAMES:
            raise NotConfigured(f"unknown timeframe {timeframe}")
        row = await HostRow.get_or_none(provider=PROVIDER, external_id=host_id)
        if row is None or row.node_id is None:  # type: ignore[attr-defined]
            raise NotFound(f"no Proxmox VM {host_id}", field="vmId")
        node = await self.nodes.get(row.node_id)  # type: ignore[attr-defined]
        points = await self.nodes.client(node).rrddata(node.name, int(host_id), timeframe)
        return [
            StatsPoint(
                time=datetime.fromtimestamp(int(point["time"]), UTC),
                cpu_fraction=_number(point, "cpu", float),
                memory_bytes=_number(point, "mem", int),
                disk_bytes=_number(point, "disk", int),
                network_in_bytes=_number(point, "netin", float),
                network_out_bytes=_number(point, "netout", float),
            )
            for point in sorted(points, key=lambda point: int(point.get("time", 0)))
            if "time" in point
        ]

    # The reconciler's pass

    async def repair(self) -> Counter[str]:
        made: Counter[str] = Counter()
        nodes = await self.nodes.all()
        by_api: dict[Any, list[Node]] = {}
        for node in nodes:
            by_api.setdefault(node.access, []).append(node)
        for group in by_api.values():
            try:
                vms = await self.nodes.client(group[0]).cluster_vms()
            except ProxmoxError as error:
                log.warning("repair skips %s: %s", group[0].access.api_url, error.message)
                continue
            made += await self._repair_group(group, {int(vm["vmid"]): vm for vm in vms})
        return made

    async def _repair_group(self, group: list[Node], present: dict[int, Any]) -> Counter[str]:
        made: Counter[str] = Counter()
        settings = self.settings
        rows = await HostRow.filter(provider=PROVIDER, node_id__in=[node.row.id for node in group])
        known = {int(row.external_id) for row in rows if row.external_id.isdigit()}
        stale = datetime.now(UTC) - timedelta(
            seconds=settings.proxmox_task_timeout * 2 + settings.proxmox_boot_timeout
        )
        # A deletion in progress destroys the VM itself, after what runs on it is removed.
        deleted_before = datetime.now(UTC) - DELETION_GRACE
        for row in rows:
            vmid = int(row.external_id) if row.external_id.isdigit() else None
            if row.status is HostStatus.READY and vmid not in present:
                await self._forget_lost(row)
                made["vms_lost"] += 1
            elif row.status is HostStatus.FAILED:
                if await self._discard(row):
                    made["failed_vms_removed"] += 1
            elif row.status is HostStatus.PROVISIONING and row.updated_at < stale:
                if row.id not in self._provisioning and await self._discard(row):
                    log.warning("host %s: provisioning abandoned, removed", row.id)
                    made["abandoned_provisions_removed"] += 1
            elif row.status is HostStatus.READY:
                service = await ServiceRow.filter(host_id=row.id).prefetch_related("owner").first()
                if service is None:
                    continue
                if service.deleted_at is not None and service.deleted_at < deleted_before:
                    # Its deletion could not destroy the VM (Proxmox VE did not answer then).
                    log.warning("VM %s of deleted service %s: destroying it", vmid, service.slug)
                    if await self._discard(row):
                        made["vms_of_deleted_services_destroyed"] += 1
                elif service.deleted_at is None and await self.grow_storage(
                    service, vm_storage_gb(service.owner, settings)
                ):
                    made["disks_grown"] += 1
        for vmid, vm in present.items():
            name = str(vm.get("name", ""))
            if vmid in known or not name.startswith("digi-") or vm.get("template"):
                continue
            node = next((n for n in group if n.name == vm.get("node")), group[0])
            config = await self._config_or_none(self.nodes.client(node), node, vmid)
            marker = f"of installation {settings.installation_id}"
            if config is None or marker not in str(config.get("description", "")):
                continue  # not made by this installation of Digi
            log.warning("VM %s (%s) has no host row: destroying it", vmid, name)
            orphan = HostRow(provider=PROVIDER, external_id=str(vmid), name=name)
            orphan.id = _marker_id(str(config.get("description", "")))
            try:
                await self._destroy_vm(orphan, node, vmid)
                made["orphan_vms_destroyed"] += 1
            except DigiError as error:
                log.error("orphan VM %s could not be destroyed: %s", vmid, error.message)
        return made

    async def _forget_lost(self, row: HostRow) -> None:
        """Its VM is gone: the services on it fail and get a new VM on their next deploy."""
        log.error("VM %s of host %s is gone from Proxmox VE", row.external_id, row.id)
        await self.pool.forget(host_id(row))
        service_ids = await ServiceRow.filter(host_id=row.id).values_list("id", flat=True)
        await Deployment.filter(
            service_id__in=service_ids,
            status__in=[DeploymentStatus.RUNNING, DeploymentStatus.STOPPED],
        ).update(
            status=DeploymentStatus.FAILED,
            message="failed",
            error=f"its VM {row.external_id} disappeared from Proxmox VE: deploy again",
            updated_at=datetime.now(UTC),
        )
        await ServiceRow.filter(host_id=row.id).update(host_id=None)
        row.status = HostStatus.FAILED
        row.state = {**row.state, "lost_at": datetime.now(UTC).isoformat()}
        row.external_id = f"lost-{row.external_id}-{secrets.token_hex(4)}"
        await row.save(update_fields=["status", "state", "external_id", "updated_at"])


def _marker_id(description: str) -> int:
    match = re.search(r"digi host (\d+) of installation", description)
    return int(match.group(1)) if match else -1


def _address(interfaces: list[dict[str, Any]]) -> str | None:
    """The VM's first IPv4 address on an interface other than loopback."""
    for interface in interfaces:
        if interface.get("name") == "lo":
            continue
        for address in interface.get("ip-addresses") or []:
            ip = str(address.get("ip-address", ""))
            if address.get("ip-address-type") == "ipv4" and not ip.startswith("169.254."):
                return ip
    return None


def _number(values: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = values.get(key)
    return None if value is None else kind(value)
