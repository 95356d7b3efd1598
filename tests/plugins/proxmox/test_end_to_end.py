"""A service deployed end to end on Proxmox: the node from PROXMOX_*, a VM made through the
fake PVE API, reached over a real sshd (Docker socket and the VM's Caddy forwarded), both
Caddy tiers, its disk grown by plan changes, and the admin's GraphQL operations on nodes and
VMs."""

from __future__ import annotations

import pytest

from digi_core.models import Host as HostRow
from digi_core.models import HostStatus, Role
from tests.core.api.conftest import GraphQLErrors
from tests.core.deploys.conftest import Platform
from tests.core.deploys.test_pipeline import hostname
from tests.core.deploys.test_routing import through
from tests.fake_proxmox import FakeProxmox, GiB
from tests.plugins.proxmox.conftest import running_in_a_vm
from tests.sshd import Sshd

NODE = """
mutation($input: ProxmoxNodeInput!) {
  addProxmoxNode(input: $input) { id name status vmCount memoryTotalBytes }
}"""


async def test_a_service_runs_in_its_own_vm_and_answers_through_both_tiers(
    on_proxmox: Platform, fake: FakeProxmox
) -> None:
    platform = on_proxmox
    _, admin = await platform.user("ops@example.com", role=Role.ADMIN)
    owner, token, service, vmid = await running_in_a_vm(platform, fake)
    assert await through(platform.settings.master_http_port, hostname(service, platform)) == (
        200,
        "hello from web\n",
    )
    row = await HostRow.get(external_id=str(vmid))
    assert row.status is HostStatus.READY and row.ssh_host_key
    assert fake.vms[vmid].disks["scsi0"] == 16 * GiB  # the free plan's

    # A plan change grows the VM's disk at once, and a downgrade never shrinks it.
    for plan, blocks, size in (("PRO", 0, 64), ("PRO", 1, 96), ("FREE", None, 96)):
        await platform.gql(
            "mutation($id: ID!, $plan: Plan!, $blocks: Int) "
            "{ setUserPlan(id: $id, plan: $plan, extraStorageBlocks: $blocks) { id } }",
            {"id": str(owner.id), "plan": plan, "blocks": blocks},
            token=admin,
        )
        assert fake.vms[vmid].disks["scsi0"] == size * GiB
    assert (await HostRow.get(external_id=str(vmid))).storage_gb == 96

    servers = (await platform.gql("{ servers { id status vmCount } }", token=admin))["servers"]
    assert {"id": "node/pve1", "status": "ready", "vmCount": 1} in servers
    assert str(vmid) in {server["id"] for server in servers}
    stats = await platform.gql(
        "query($id: String!) { vmStats(vmId: $id, timeframe: DAY) { samples { cpuFraction } } }",
        {"id": str(vmid)},
        token=admin,
    )
    assert stats["vmStats"]["samples"]

    # The node hosts a VM: removing it is refused with the reason.
    with pytest.raises(GraphQLErrors, match="still hosts 1 VM"):
        await platform.gql('mutation { removeProxmoxNode(id: "node/pve1") }', token=admin)

    deleted = await platform.gql(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
        {"id": service["id"]},
        token=token,
    )
    assert deleted["deleteService"]["removed"]
    assert vmid not in fake.vms
    assert await platform.gql('mutation { removeProxmoxNode(id: "node/pve1") }', token=admin)


async def test_nodes_are_added_only_by_admins_and_only_with_good_credentials(
    on_proxmox: Platform, fake: FakeProxmox
) -> None:
    platform = on_proxmox
    _, admin = await platform.user("ops@example.com", role=Role.ADMIN)
    _, user = await platform.user("user@example.com")
    good = {
        "name": "second",
        "apiUrl": fake.url,
        "tokenId": fake.token_id,
        "tokenSecret": fake.token_secret,
        "node": "pve1",
        "templateVmId": 9000,
        "maxVms": 3,
    }
    with pytest.raises(GraphQLErrors) as refused:
        await platform.gql(NODE, {"input": good}, token=user)
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"
    with pytest.raises(GraphQLErrors, match="invalid token value") as bad:
        await platform.gql(NODE, {"input": {**good, "tokenSecret": "nope"}}, token=admin)
    assert bad.value.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    with pytest.raises(GraphQLErrors, match="tokenId must look like"):
        await platform.gql(NODE, {"input": {**good, "tokenId": "nope"}}, token=admin)
    added = (await platform.gql(NODE, {"input": good}, token=admin))["addProxmoxNode"]
    assert added == {
        "id": "node/second",
        "name": "second",
        "status": "ready",
        "vmCount": 0,
        "memoryTotalBytes": float(fake.nodes["pve1"].maxmem),
    }


async def test_a_service_whose_vm_does_not_answer_is_deleted_with_its_vm(
    on_proxmox: Platform, fake: FakeProxmox, vm_sshd: Sshd
) -> None:
    platform = on_proxmox
    _, token, service, vmid = await running_in_a_vm(platform, fake)
    vm_sshd.drop_connections()
    await vm_sshd.stop()

    deleted = await platform.gql(
        'mutation($id: ID!) { deleteService(id: $id, confirm: "shop") { removed } }',
        {"id": service["id"]},
        token=token,
    )
    removed = deleted["deleteService"]["removed"]
    assert any(item.startswith("not its containers yet") for item in removed), removed
    assert vmid not in fake.vms  # its VM went through the Proxmox API, with what ran on it
