"""The Proxmox provider against the fake PVE API: nodes, a VM per service made step by step,
its failures cleaned up, a stopped worker resumed, storage, stats, repair."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from digi_core.config import Settings
from digi_core.errors import BadUserInput, Conflict, NotFound
from digi_core.models import ComputeNode, HostStatus, Plan, Service, User
from digi_core.models import Host as HostRow
from digi_core.providers import ComputeProvider
from digi_core.ssh import HostKeyChanged
from digi_proxmox.compute import ProvisionFailed, ProxmoxCompute
from tests.contracts.compute import ComputeProviderContract, ProvisionLog
from tests.fake_proxmox import FakeProxmox, GiB
from tests.plugins.proxmox.conftest import NODE_NAME, node_options, proxmox_settings
from tests.sshd import Sshd


class TestProxmoxComputeContract(ComputeProviderContract):
    @pytest.fixture
    async def provider(self, proxmox: ProxmoxCompute) -> AsyncIterator[ComputeProvider]:
        yield proxmox


async def make_service(plan: Plan = Plan.FREE, blocks: int = 0) -> Service:
    suffix = secrets.token_hex(4)
    owner = await User.create(
        email=f"vm-{suffix}@example.com", name="VM", plan=plan, extra_storage_blocks=blocks
    )
    return await Service.create(owner=owner, name="app", slug=f"app-{suffix}")


def vms(fake: FakeProxmox) -> dict[int, object]:
    return {vmid: vm for vmid, vm in fake.vms.items() if vmid != 9000}


# Nodes


async def test_a_node_with_a_wrong_token_is_refused_with_the_api_reason(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    with pytest.raises(BadUserInput, match="401") as caught:
        await proxmox.add_node("other", node_options(fake, token_secret="wrong"))
    assert "invalid token value" in caught.value.message
    assert not await ComputeNode.exists(name="other")


async def test_a_node_the_cluster_does_not_have_or_a_vm_that_is_no_template_is_refused(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    with pytest.raises(BadUserInput, match="has no node pve9; it has: pve1"):
        await proxmox.add_node("other", node_options(fake, node="pve9"))
    with pytest.raises(BadUserInput, match="no VM 4242"):
        await proxmox.add_node("other", node_options(fake, template_vm_id=4242))
    with pytest.raises(Conflict, match="exists already"):
        await proxmox.add_node(NODE_NAME, node_options(fake))


async def test_a_node_is_listed_with_its_resources_and_the_token_is_stored_encrypted(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    [node] = [h for h in await proxmox.hosts() if h.id == f"node/{NODE_NAME}"]
    assert node.status == "ready"
    assert node.memory_total_bytes == fake.nodes["pve1"].maxmem
    assert node.cpus and node.disk_total_bytes
    assert node.vm_count == 0
    row = await ComputeNode.get(name=NODE_NAME)
    assert fake.token_secret not in (row.credentials_encrypted or "")


async def test_removing_a_node_with_vms_is_refused_and_drains_it(
    proxmox: ProxmoxCompute,
) -> None:
    service = await make_service()
    await proxmox.host_for_service(service, ProvisionLog())
    with pytest.raises(Conflict, match=f"still hosts 1 VM.*{service.slug}"):
        await proxmox.remove_node(f"node/{NODE_NAME}")
    assert not (await ComputeNode.get(name=NODE_NAME)).enabled
    await proxmox.release_service(service)
    await proxmox.remove_node(f"node/{NODE_NAME}")
    assert not await ComputeNode.exists(name=NODE_NAME)
    with pytest.raises(NotFound):
        await proxmox.remove_node(NODE_NAME)


# A VM per service


async def test_provisioning_clones_configures_grows_starts_and_reaches_the_vm(
    proxmox: ProxmoxCompute, fake: FakeProxmox, vm_sshd: Sshd
) -> None:
    service = await make_service(Plan.PRO, blocks=1)
    lines = ProvisionLog()
    host = await proxmox.host_for_service(service, lines)
    assert (await host.docker.version())["ApiVersion"]
    [(vmid, vm)] = vms(fake).items()
    assert vm.status == "running"
    assert vm.node == "pve1"
    assert vm.disks["scsi0"] == (64 + 32) * GiB  # Pro, plus one 32 GB block
    assert vm.config["ciuser"] == vm_sshd.user
    assert unquote(vm.config["sshkeys"]).startswith("ssh-ed25519 ")
    assert vm.config["ipconfig0"] == "ip=dhcp"
    row = await HostRow.get(external_id=str(vmid))
    assert (row.status, row.storage_gb, row.address) == (HostStatus.READY, 96, "127.0.0.1")
    assert row.ssh_host_key == vm_sshd.host_key  # pinned on first contact
    assert (await Service.get(id=service.id)).host_id == row.id  # type: ignore[attr-defined]
    assert any("cloning template 9000" in line for line in lines)
    assert lines[-1] == f"VM {vmid} is ready"
    calls = [(method, path.split("/")[-1]) for method, path, _ in fake.requests]
    assert ("POST", "clone") in calls and ("PUT", "resize") in calls
    # Listed, and its usage series readable.
    assert str(vmid) in {h.id for h in await proxmox.hosts()}
    points = await proxmox.host_stats(str(vmid), "hour")
    assert points and points[0].time < points[-1].time
    assert points[-1].memory_bytes is not None


async def test_a_failed_clone_removes_what_was_made_and_says_why(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    fake.fail_next_task("qmclone", "clone failed: out of space on local-lvm")
    service = await make_service()
    with pytest.raises(ProvisionFailed, match="out of space on local-lvm"):
        await proxmox.host_for_service(service, ProvisionLog())
    assert vms(fake) == {}
    assert not await HostRow.filter(provider="proxmox").exists()
    assert (await Service.get(id=service.id)).host_id is None  # type: ignore[attr-defined]
    # The next deploy starts again from nothing and succeeds.
    assert await proxmox.host_for_service(service, ProvisionLog())


async def test_an_agent_that_never_answers_times_out_and_destroys_the_vm(
    migrated: Settings, fake: FakeProxmox, vm_sshd: Sshd, tmp_path: Path
) -> None:
    compute = ProxmoxCompute()
    compute.agent_poll_seconds = 0.05
    settings = proxmox_settings(migrated, fake, vm_sshd, tmp_path, proxmox_boot_timeout=1.0)
    await compute.start(settings)
    try:
        await compute.add_node(NODE_NAME, node_options(fake))
        fake.agent_available = False
        with pytest.raises(ProvisionFailed, match="guest agent reported no address within 1 s"):
            await compute.host_for_service(await make_service(), ProvisionLog())
        assert vms(fake) == {}
        assert not await HostRow.filter(provider="proxmox").exists()
    finally:
        await compute.close()


async def test_a_worker_stopped_mid_clone_is_continued_by_the_next(
    migrated: Settings, fake: FakeProxmox, vm_sshd: Sshd, tmp_path: Path
) -> None:
    settings = proxmox_settings(migrated, fake, vm_sshd, tmp_path)
    first, second = ProxmoxCompute(), ProxmoxCompute()
    for compute in (first, second):
        compute.agent_poll_seconds = 0.05
        await compute.start(settings)
        compute.lease_seconds = 0.6  # the stopped worker's heartbeat goes stale quickly
    try:
        await first.add_node(NODE_NAME, node_options(fake))
        service = await make_service()
        fake.task_seconds = 1.0
        provisioning = asyncio.create_task(first.host_for_service(service, ProvisionLog()))
        for _ in range(500):  # until Proxmox has the clone task
            if any(task.type == "qmclone" for task in fake.tasks.values()):
                break
            await asyncio.sleep(0.02)
        provisioning.cancel()  # the worker dies while Proxmox clones
        with pytest.raises(asyncio.CancelledError):
            await provisioning
        row = await HostRow.get(provider="proxmox")
        assert row.status is HostStatus.PROVISIONING and "clone_upid" in row.state
        fake.task_seconds = 0.1
        host = await second.host_for_service(service, ProvisionLog())
        assert (await host.docker.version())["ApiVersion"]
        assert len(vms(fake)) == 1  # continued, not cloned twice
        assert sum(1 for task in fake.tasks.values() if task.type == "qmclone") == 1
    finally:
        await first.close()
        await second.close()


async def test_two_workers_provisioning_one_service_make_one_vm(
    migrated: Settings, fake: FakeProxmox, vm_sshd: Sshd, tmp_path: Path
) -> None:
    # Two processes (the deploy resumed elsewhere while the first still works on it).
    settings = proxmox_settings(migrated, fake, vm_sshd, tmp_path)
    first, second = ProxmoxCompute(), ProxmoxCompute()
    for compute in (first, second):
        compute.agent_poll_seconds = 0.05
        await compute.start(settings)
        compute.lease_seconds = 3.0
    try:
        await first.add_node(NODE_NAME, node_options(fake))
        service = await make_service()
        fake.task_seconds = 0.5
        waited = ProvisionLog()
        one, other = await asyncio.gather(
            first.host_for_service(service, ProvisionLog()),
            second.host_for_service(service, waited),
        )
        assert one.id == other.id
        assert len(vms(fake)) == 1
        assert sum(1 for task in fake.tasks.values() if task.type == "qmclone") == 1
    finally:
        await first.close()
        await second.close()


async def test_deleting_the_service_stops_and_destroys_its_vm(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    service = await make_service()
    await proxmox.host_for_service(service, ProvisionLog())
    assert len(vms(fake)) == 1
    await proxmox.release_service(service)
    assert vms(fake) == {}
    assert not await HostRow.filter(provider="proxmox").exists()
    destroyed = [params for method, path, params in fake.requests if method == "DELETE"]
    assert destroyed and destroyed[0].get("purge") == "1"


async def test_a_storage_upgrade_grows_the_disk_and_never_shrinks_it(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    service = await make_service(Plan.PRO)
    await proxmox.host_for_service(service, ProvisionLog())
    [vm] = vms(fake).values()
    assert vm.disks["scsi0"] == 64 * GiB
    assert await proxmox.grow_storage(service, 128)
    assert vm.disks["scsi0"] == 128 * GiB
    assert not await proxmox.grow_storage(service, 64)  # a downgrade keeps the disk
    assert vm.disks["scsi0"] == 128 * GiB
    assert (await HostRow.get(provider="proxmox")).storage_gb == 128


async def test_a_changed_ssh_host_key_is_refused(proxmox: ProxmoxCompute, vm_sshd: Sshd) -> None:
    service = await make_service()
    await proxmox.host_for_service(service, ProvisionLog())
    await proxmox.pool.close()  # a new process: nothing pooled
    proxmox._pool = type(proxmox.pool)(proxmox.pool.key)
    await vm_sshd.rotate_host_key()
    with pytest.raises(HostKeyChanged):
        await proxmox.existing_host(service)


# The reconciler's repair


async def test_repair_destroys_a_vm_without_a_row_and_forgets_a_row_without_a_vm(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    kept, lost = await make_service(), await make_service()
    await proxmox.host_for_service(kept, ProvisionLog())
    await proxmox.host_for_service(lost, ProvisionLog())
    kept_row = await HostRow.get(services__id=kept.id)
    lost_row = await HostRow.get(services__id=lost.id)
    # A row lost (a crash after the clone), and a VM destroyed behind Digi's back.
    await Service.filter(id=kept.id).update(host_id=None)
    await HostRow.filter(id=kept_row.id).delete()
    orphan = int(kept_row.external_id)
    fake.vms.pop(int(lost_row.external_id))
    made = await proxmox.repair()
    assert made["orphan_vms_destroyed"] == 1
    assert made["vms_lost"] == 1
    assert orphan not in fake.vms
    assert (await Service.get(id=lost.id)).host_id is None  # type: ignore[attr-defined]
    assert await proxmox.existing_host(lost) is None


async def test_repair_grows_the_disks_of_a_user_who_moved_to_pro(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    # A plan change arrives by a billing webhook; the reconciler's pass grows the disk.
    service = await make_service(Plan.FREE)
    await proxmox.host_for_service(service, ProvisionLog())
    [vm] = vms(fake).values()
    assert vm.disks["scsi0"] == 16 * GiB
    await User.filter(services__id=service.id).update(plan=Plan.PRO)
    assert (await proxmox.repair())["disks_grown"] == 1
    assert vm.disks["scsi0"] == 64 * GiB
    assert (await proxmox.repair())["disks_grown"] == 0


async def test_repair_destroys_the_vm_of_a_service_deleted_a_while_ago(
    proxmox: ProxmoxCompute, fake: FakeProxmox
) -> None:
    """A deletion whose release could not reach Proxmox VE leaves the VM for the repair;
    one still in progress (inside the grace) is left to finish its own work."""
    service = await make_service()
    await proxmox.host_for_service(service, ProvisionLog())
    await Service.filter(id=service.id).update(deleted_at=datetime.now(UTC))
    assert (await proxmox.repair())["vms_of_deleted_services_destroyed"] == 0
    assert len(vms(fake)) == 1
    await Service.filter(id=service.id).update(deleted_at=datetime.now(UTC) - timedelta(hours=1))
    assert (await proxmox.repair())["vms_of_deleted_services_destroyed"] == 1
    assert vms(fake) == {}
    assert not await HostRow.filter(provider="proxmox").exists()
