"""The Proxmox VE API as Digi uses it: proxmoxer (synchronous) in a thread, errors made typed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from proxmoxer import ProxmoxAPI, ResourceException  # type: ignore[import-untyped]
from proxmoxer.core import AuthenticationError  # type: ignore[import-untyped]

from digi_core.errors import DigiError

T = TypeVar("T")
REQUEST_TIMEOUT = 30
# Short tasks (a start, a resize) end in well under a second: ask often at first.
TASK_POLL_SECONDS = (0.1, 0.2, 0.5, 1.0)


class ProxmoxError(DigiError):
    """Proxmox VE refused a request or could not be reached; the message has its reason."""

    code = "PROXMOX_ERROR"
    http_status = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VmMissing(ProxmoxError):
    """The VM is not there (PVE answers 500 "Configuration file … does not exist")."""


class TaskFailed(ProxmoxError):
    """A task (clone, start, resize, destroy) ended with an error, or did not end in time."""


@dataclass(frozen=True)
class Access:
    """How to reach one Proxmox VE API: its URL, an API token, how to check its certificate."""

    api_url: str
    token_id: str  # user@realm!tokenid
    token_secret: str
    verify_ssl: bool | str = True  # a CA file's path, or whether to check against the system's


def verify_setting(value: str) -> bool | str:
    """PROXMOX_VERIFY_SSL: "true", "false", or the path of a CA file."""
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes", ""}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    return value


class ProxmoxClient:
    def __init__(self, access: Access) -> None:
        url = urlsplit(access.api_url)
        user, _, token_name = access.token_id.partition("!")
        self.access = access
        self._api = ProxmoxAPI(
            url.hostname,
            port=url.port or 8006,
            user=user,
            token_name=token_name,
            token_value=access.token_secret,
            verify_ssl=access.verify_ssl,
            backend="https",
            timeout=REQUEST_TIMEOUT,
        )

    async def call(self, what: str, request: Callable[[Any], T]) -> T:
        """Run ``request(api)`` off the event loop; a refusal becomes a typed error."""
        try:
            return await asyncio.to_thread(request, self._api)
        except ResourceException as error:
            # proxmoxer puts PVE's own reason (the HTTP reason phrase) in ``content``.
            reason = str(error.content or "").strip() or str(error.status_message or "")
            errors = f" ({error.errors})" if error.errors else ""
            message = f"Proxmox VE refused to {what}: {error.status_code} {reason}{errors}"
            kind = VmMissing if "does not exist" in reason else ProxmoxError
            raise kind(message, status=error.status_code) from None
        except AuthenticationError as error:
            raise ProxmoxError(f"Proxmox VE refused the API token to {what}: {error}") from None
        except requests.RequestException as error:
            raise ProxmoxError(
                f"cannot reach Proxmox VE at {self.access.api_url} to {what}: "
                f"{type(error).__name__}: {error}"
            ) from None

    # Cluster and nodes

    async def nodes(self) -> list[dict[str, Any]]:
        return await self.call("list its nodes", lambda api: api.nodes.get())

    async def cluster_vms(self) -> list[dict[str, Any]]:
        return await self.call("list its VMs", lambda api: api.cluster.resources.get(type="vm"))

    async def next_id(self) -> int:
        return int(await self.call("give a free VM id", lambda api: api.cluster.nextid.get()))

    # One VM

    async def vm_config(self, node: str, vmid: int) -> dict[str, Any]:
        return await self.call(
            f"read VM {vmid}'s config", lambda api: api.nodes(node).qemu(vmid).config.get()
        )

    async def set_config(self, node: str, vmid: int, **params: Any) -> None:
        if "sshkeys" in params:
            # PVE wants the value itself URL-encoded, on top of the form encoding.
            params["sshkeys"] = quote(params["sshkeys"], safe="")
        await self.call(
            f"configure VM {vmid}", lambda api: api.nodes(node).qemu(vmid).config.put(**params)
        )

    async def clone(self, node: str, template: int, newid: int, **params: Any) -> str:
        return str(
            await self.call(
                f"clone template {template}",
                lambda api: api.nodes(node).qemu(template).clone.post(newid=newid, **params),
            )
        )

    async def resize(self, node: str, vmid: int, disk: str, size: str) -> str | None:
        """Older PVE resizes synchronously (answers null); newer ones answer a task."""
        upid = await self.call(
            f"resize VM {vmid}'s disk",
            lambda api: api.nodes(node).qemu(vmid).resize.put(disk=disk, size=size),
        )
        return str(upid) if upid else None

    async def vm_status(self, node: str, vmid: int) -> dict[str, Any]:
        return await self.call(
            f"read VM {vmid}'s status", lambda api: api.nodes(node).qemu(vmid).status.current.get()
        )

    async def power(self, node: str, vmid: int, action: str) -> str:
        return str(
            await self.call(
                f"{action} VM {vmid}",
                lambda api: getattr(api.nodes(node).qemu(vmid).status, action).post(),
            )
        )

    async def agent_interfaces(self, node: str, vmid: int) -> list[dict[str, Any]]:
        answer = await self.call(
            f"ask VM {vmid}'s guest agent for its addresses",
            lambda api: api.nodes(node).qemu(vmid).agent("network-get-interfaces").get(),
        )
        result = answer.get("result", []) if isinstance(answer, dict) else []
        return list(result)

    async def destroy(self, node: str, vmid: int) -> str:
        return str(
            await self.call(
                f"destroy VM {vmid}",
                lambda api: (
                    api.nodes(node).qemu(vmid).delete(purge=1, **{"destroy-unreferenced-disks": 1})
                ),
            )
        )

    async def rrddata(self, node: str, vmid: int, timeframe: str) -> list[dict[str, Any]]:
        return await self.call(
            f"read VM {vmid}'s usage",
            lambda api: api.nodes(node).qemu(vmid).rrddata.get(timeframe=timeframe, cf="AVERAGE"),
        )

    # Tasks

    async def task_status(self, node: str, upid: str) -> dict[str, Any]:
        return await self.call(
            "report a task's status", lambda api: api.nodes(node).tasks(upid).status.get()
        )

    async def task_log(self, node: str, upid: str, lines: int = 20) -> list[str]:
        try:
            entries = await self.call(
                "give a task's log", lambda api: api.nodes(node).tasks(upid).log.get(limit=500)
            )
        except ProxmoxError:
            return []
        return [str(entry.get("t", "")) for entry in entries][-lines:]

    async def wait_task(self, node: str, upid: str, what: str, seconds: float) -> None:
        """Until the task stops; :class:`TaskFailed` with its log when it did not end OK."""
        deadline = time.monotonic() + seconds
        for attempt in itertools.count():
            status = await self.task_status(node, upid)
            if status.get("status") == "stopped":
                exit_status = str(status.get("exitstatus", ""))
                if exit_status == "OK":
                    return
                log = await self.task_log(node, upid)
                raise TaskFailed(
                    f"Proxmox VE could not {what}: {exit_status}"
                    + ("\n" + "\n".join(log) if log else "")
                )
            if time.monotonic() > deadline:
                raise TaskFailed(
                    f"Proxmox VE did not {what} within {seconds:g} s "
                    f"(task {upid} still running; DIGI_PROXMOX_TASK_TIMEOUT)"
                )
            await asyncio.sleep(TASK_POLL_SECONDS[min(attempt, len(TASK_POLL_SECONDS) - 1)])
