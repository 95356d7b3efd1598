"""The console's Hosts screen against a platform on Proxmox VE (the fake PVE API, a VM reached
over a real sshd): the node with its resources, the service's VM, and the VM's usage over
time. Here, not in tests/tui: a second platform would replace the database of the console
tests' package-wide one."""

from __future__ import annotations

from textual.widgets import DataTable, Sparkline, Static

from digi_core.models import Role
from digi_tui.app import DigiConsole
from tests.core.deploys.conftest import Platform
from tests.fake_proxmox import FakeProxmox
from tests.plugins.proxmox.conftest import running_in_a_vm
from tests.tui.conftest import FAST, until
from tests.tui.test_console import rows


async def test_hosts_show_the_node_and_the_usage_of_a_services_vm(
    on_proxmox: Platform, fake: FakeProxmox
) -> None:
    platform = on_proxmox
    _, admin = await platform.user("ops@example.com", role=Role.ADMIN)
    _, _, service, vmid = await running_in_a_vm(platform, fake)

    api_url = str(platform.client.make_url("")).rstrip("/")
    console = DigiConsole(api_url, admin, "from the test", options=FAST)
    async with console.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: len(rows(pilot, "hosts")) == 2)
        node, vm = rows(pilot, "hosts")
        memory = fake.nodes["pve1"].maxmem / 1024**3
        assert node[:3] == ["pve1", "proxmox", "ready"] and node[6] == "1"
        assert node[3].endswith(f"of {fake.nodes['pve1'].maxcpu}")
        assert node[4].endswith(f"/{memory:.1f} GiB")
        assert vm[:3] == ["digi-" + service["slug"], "proxmox", "ready"]

        await pilot.press("down")  # the VM: its usage from rrddata
        stats = pilot.app.screen.query_one("#host-stats", Static)
        sparkline = pilot.app.screen.query_one("#host-cpu", Sparkline)
        await until(pilot, lambda: str(stats.content).startswith(f"{vmid} at "))
        assert "CPU over the last hour" in str(stats.content)
        assert "network in" in str(stats.content)
        assert sparkline.display and len(list(sparkline.data or [])) > 10

        await pilot.press("up")  # a node has no VM statistics: said, not a crash
        await until(pilot, lambda: "node/pve1: no statistics" in str(stats.content))
        assert not sparkline.display
        assert isinstance(pilot.app.screen.query_one("#hosts"), DataTable)
