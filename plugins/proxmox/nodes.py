"""Proxmox VE nodes an operator added: checked against the API, stored with their token
encrypted, and picked for a new VM by free memory within their limits."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from digi_core.config import Settings
from digi_core.crypto import SecretBox
from digi_core.errors import BadUserInput, Conflict, NotFound
from digi_core.models import ComputeNode, Host, HostStatus, Service
from digi_proxmox.client import Access, ProxmoxClient, ProxmoxError, VmMissing, verify_setting

log = logging.getLogger(__name__)

PROVIDER = "proxmox"
# Hosts that hold (or are making) a VM on their node.
LIVE = [HostStatus.PROVISIONING, HostStatus.READY, HostStatus.UNREACHABLE, HostStatus.DESTROYING]


@dataclass(frozen=True)
class Node:
    """A node row with what a client needs."""

    row: ComputeNode
    access: Access

    @property
    def name(self) -> str:
        """The node's name in the cluster (``pve1``), not the operator's label."""
        return str(self.row.settings["node"])

    def option(self, key: str, default: Any = None) -> Any:
        return self.row.settings.get(key, default)


class Nodes:
    """The proxmox ComputeNode rows, one client per API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.box = SecretBox(settings.secret_value, "compute-node-credentials")
        self._clients: dict[Access, ProxmoxClient] = {}

    def client(self, node: Node) -> ProxmoxClient:
        client = self._clients.get(node.access)
        if client is None:
            client = self._clients[node.access] = ProxmoxClient(node.access)
        return client

    def node(self, row: ComputeNode) -> Node:
        credentials = json.loads(self.box.decrypt(row.credentials_encrypted or ""))
        access = Access(
            api_url=str(row.api_url),
            token_id=credentials["token_id"],
            token_secret=credentials["token_secret"],
            verify_ssl=verify_setting(self.settings.proxmox_verify_ssl),
        )
        return Node(row, access)

    async def all(self, *, enabled_only: bool = False) -> list[Node]:
        query = ComputeNode.filter(provider=PROVIDER)
        if enabled_only:
            query = query.filter(enabled=True)
        return [self.node(row) for row in await query.order_by("id")]

    async def get(self, node_id: int) -> Node:
        row = await ComputeNode.get_or_none(id=node_id, provider=PROVIDER)
        if row is None:
            raise NotFound(f"no Proxmox node {node_id}", field="id")
        return self.node(row)

    async def add(self, name: str, options: dict[str, Any]) -> Node:
        """Check the token, the node and the template against the API, then store the node."""
        if await ComputeNode.exists(name=name):
            raise Conflict(f"a node named {name} exists already", field="name")
        access = Access(
            api_url=str(options["api_url"]),
            token_id=str(options["token_id"]),
            token_secret=str(options["token_secret"]),
            verify_ssl=verify_setting(self.settings.proxmox_verify_ssl),
        )
        client = ProxmoxClient(access)
        node_name = str(options["node"])
        template = int(options["template_vm_id"])
        try:
            listed = {str(entry.get("node")): entry for entry in await client.nodes()}
        except ProxmoxError as error:
            raise BadUserInput(error.message, field="apiUrl") from None
        if node_name not in listed:
            raise BadUserInput(
                f"Proxmox VE at {access.api_url} has no node {node_name}; it has: "
                + (", ".join(sorted(listed)) or "none"),
                field="node",
            )
        try:
            config = await client.vm_config(node_name, template)
        except VmMissing:
            raise BadUserInput(
                f"node {node_name} has no VM {template} to clone: give the id of the "
                "template VM (Docker and Caddy installed, cloud-init, qemu-guest-agent)",
                field="templateVmId",
            ) from None
        except ProxmoxError as error:
            raise BadUserInput(error.message, field="templateVmId") from None
        if str(config.get("template", "0")) != "1":
            raise BadUserInput(
                f"VM {template} on {node_name} is not a template: convert it first "
                f"(qm template {template})",
                field="templateVmId",
            )
        settings = {
            "node": node_name,
            "template_vm_id": template,
            "storage": options.get("storage") or "local-lvm",
            "bridge": options.get("bridge") or "vmbr0",
            "full_clone": bool(options.get("full_clone", False)),
        }
        credentials = json.dumps({"token_id": access.token_id, "token_secret": access.token_secret})
        row = await ComputeNode.create(
            provider=PROVIDER,
            name=name,
            api_url=access.api_url,
            credentials_encrypted=self.box.encrypt(credentials),
            settings=settings,
            max_vms=options.get("max_vms"),
            max_memory_mb=options.get("max_memory_mb"),
        )
        log.info("Proxmox node %s (%s at %s) added", name, node_name, access.api_url)
        return self.node(row)

    async def remove(self, node_id: int) -> None:
        """Refused while it hosts VMs; it then gets no new ones (drained) until emptied."""
        node = await self.get(node_id)
        hosts = await Host.filter(node_id=node.row.id, status__in=LIVE).values_list("id", flat=True)
        if hosts:
            node.row.enabled = False
            await node.row.save(update_fields=["enabled"])
            slugs = sorted(
                str(s)
                for s in await Service.filter(host_id__in=hosts).values_list("slug", flat=True)
            )
            raise Conflict(
                f"node {node.row.name} still hosts {len(hosts)} VM(s)"
                + (f" (services {', '.join(slugs)})" if slugs else "")
                + ": it gets no new VMs from now on; delete those services, then remove it",
                field="id",
            )
        await Host.filter(node_id=node.row.id).delete()  # failed ones, kept for the record
        await node.row.delete()
        log.info("Proxmox node %s removed", node.row.name)

    async def pick(self, memory_mb: int) -> Node:
        """The enabled node with the most free memory that fits one more VM of
        ``memory_mb``, within its limits."""
        best: tuple[int, Node] | None = None
        reasons: list[str] = []
        for node in await self.all(enabled_only=True):
            try:
                listed = {
                    str(entry.get("node")): entry for entry in await self.client(node).nodes()
                }
            except ProxmoxError as error:
                reasons.append(f"{node.row.name}: {error.message}")
                continue
            entry = listed.get(node.name)
            if entry is None or entry.get("status") != "online":
                reasons.append(f"{node.row.name}: not online")
                continue
            count = await Host.filter(node_id=node.row.id, status__in=LIVE).count()
            free = int(entry.get("maxmem", 0)) - int(entry.get("mem", 0))
            if node.row.max_vms is not None and count >= node.row.max_vms:
                reasons.append(f"{node.row.name}: at its limit of {node.row.max_vms} VMs")
            elif node.row.max_memory_mb is not None and (
                (count + 1) * memory_mb > node.row.max_memory_mb
            ):
                reasons.append(f"{node.row.name}: at its memory limit")
            elif free < memory_mb * 1024 * 1024:
                reasons.append(f"{node.row.name}: {free // 2**20} MB free")
            elif best is None or free > best[0]:
                best = (free, node)
        if best is None:
            raise ProxmoxError(
                f"no Proxmox node has room for a VM of {memory_mb} MB"
                + (f" ({'; '.join(reasons)})" if reasons else " (no node added)")
                + ": add a node (addProxmoxNode) or raise a node's limits"
            )
        return best[1]
