"""The fake Proxmox VE API, driven by proxmoxer itself (https backend, token auth, CA file)."""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException  # type: ignore[import-untyped]

from tests.fake_proxmox import FakeProxmox, GiB

T = TypeVar("T")
KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIATuCezuHC3VLhCpGfe7D7WL2w2gLXdNO9LxtCCsSyhz a@b\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm3p9k8JmJrGm0qXv0YV2m7k9eWmG1n0c7yE7f7cK2t c+d@e"
)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeProxmox]:
    async with FakeProxmox(tmp_path / "pve", task_seconds=0.05) as server:
        yield server


def client(fake: FakeProxmox, secret: str | None = None) -> ProxmoxAPI:
    user, _, token_name = fake.token_id.partition("!")
    return ProxmoxAPI(
        fake.host,
        port=fake.port,
        user=user,
        token_name=token_name,
        token_value=secret or fake.token_secret,
        verify_ssl=str(fake.ca_file),
        backend="https",
        timeout=5,
    )


async def call(function: Callable[[], T]) -> T:
    """proxmoxer is synchronous: off the event loop, like Digi runs it."""
    return await asyncio.to_thread(function)


async def wait_task(api: ProxmoxAPI, node: str, upid: str, seconds: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status: dict[str, Any] = await call(lambda: api.nodes(node).tasks(upid).status.get())
        if status["status"] == "stopped" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)


async def clone(fake: FakeProxmox, api: ProxmoxAPI, newid: int, **extra: Any) -> str:
    upid: str = await call(
        lambda: api.nodes("pve1").qemu(9000).clone.post(newid=newid, name=f"vm{newid}", **extra)
    )
    return upid


async def test_wrong_secret_is_refused_and_not_recorded(fake: FakeProxmox) -> None:
    api = client(fake, secret="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes.get())
    assert caught.value.status_code == 401
    assert caught.value.content == "invalid token value!"
    assert fake.requests == []


async def test_unknown_token_and_no_token(fake: FakeProxmox) -> None:
    user = fake.token_id.partition("!")[0]
    api = ProxmoxAPI(
        fake.host,
        port=fake.port,
        user=user,
        token_name="other",
        token_value=fake.token_secret,
        verify_ssl=str(fake.ca_file),
    )
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.version.get())
    assert caught.value.status_code == 401
    assert caught.value.content == f"no such token 'other' for user '{user}'"
    answer = await call(
        lambda: requests.get(f"{fake.url}/api2/json/version", verify=str(fake.ca_file), timeout=5)
    )
    assert (answer.status_code, answer.reason, answer.json()) == (401, "No ticket", {"data": None})


async def test_untrusted_without_the_ca(fake: FakeProxmox) -> None:
    user, _, token_name = fake.token_id.partition("!")
    api = ProxmoxAPI(
        fake.host,
        port=fake.port,
        user=user,
        token_name=token_name,
        token_value=fake.token_secret,
        verify_ssl=True,
    )
    with pytest.raises(requests.exceptions.SSLError):
        await call(lambda: api.version.get())


async def test_version_nodes_and_requests_log(fake: FakeProxmox) -> None:
    api = client(fake)
    version = await call(lambda: api.version.get())
    assert set(version) == {"version", "release", "repoid"}
    nodes = await call(lambda: api.nodes.get())
    assert [node["node"] for node in nodes] == ["pve1"]
    node = nodes[0]
    assert node["status"] == "online" and node["type"] == "node" and node["id"] == "node/pve1"
    assert 0 <= node["cpu"] < 1 and node["mem"] < node["maxmem"] and node["maxcpu"] > 0
    status = await call(lambda: api.nodes("pve1").status.get())
    assert status["memory"]["total"] == node["maxmem"]
    assert status["memory"]["used"] + status["memory"]["free"] == status["memory"]["total"]
    assert {"total", "used", "free", "avail"} <= set(status["rootfs"])
    assert fake.requests == [
        ("GET", "/version", {}),
        ("GET", "/nodes", {}),
        ("GET", "/nodes/pve1/status", {}),
    ]


async def test_unknown_node_and_missing_vm(fake: FakeProxmox) -> None:
    api = client(fake)
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("nope").qemu.get())
    assert caught.value.status_code == 500
    assert caught.value.content.startswith("hostname lookup 'nope' failed")
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(123).config.get())
    assert caught.value.status_code == 500
    assert (
        caught.value.content
        == "Configuration file 'nodes/pve1/qemu-server/123.conf' does not exist"
    )
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(42).config.get())
    assert caught.value.status_code == 400
    assert caught.value.errors == {"vmid": "value must have a minimum value of 100"}


async def test_nextid(fake: FakeProxmox) -> None:
    api = client(fake)
    assert await call(lambda: api.cluster.nextid.get()) == "100"
    assert await call(lambda: api.cluster.nextid.get(vmid=555)) == "555"
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.cluster.nextid.get(vmid=9000))
    assert caught.value.status_code == 400
    assert caught.value.content == "Parameter verification failed."
    assert caught.value.errors == {"vmid": "VM 9000 already exists"}


async def test_clone_runs_as_a_task_then_the_vm_is_usable(fake: FakeProxmox) -> None:
    api = client(fake)
    upid = await clone(fake, api, 100)
    fields = upid.split(":")
    assert len(fields) == 9 and fields[0] == "UPID" and fields[1] == "pve1"
    assert fields[5:8] == ["qmclone", "9000", fake.token_id] and fields[8] == ""
    assert fake.vms[100].lock == "clone"
    running = await call(lambda: api.nodes("pve1").tasks(upid).status.get())
    assert running["status"] == "running" and "exitstatus" not in running
    assert (running["type"], running["id"], running["user"], running["tokenid"]) == (
        "qmclone",
        "9000",
        "digi@pve",
        "digi",
    )
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(100).config.put(cores=4))
    assert caught.value.status_code == 500 and caught.value.content == "VM is locked (clone)"
    done = await wait_task(api, "pve1", upid)
    assert (done["status"], done["exitstatus"]) == ("stopped", "OK")
    log = await call(lambda: api.nodes("pve1").tasks(upid).log.get())
    assert log[-1] == {"n": len(log), "t": "TASK OK"}
    vm = fake.vms[100]
    assert vm.lock is None and not vm.template and vm.disks == {"scsi0": 10 * GiB}
    config = await call(lambda: api.nodes("pve1").qemu(100).config.get())
    assert config["name"] == "vm100" and "template" not in config and config["cores"] == 2
    assert config["scsi0"].startswith("local-lvm:base-9000-disk-0/vm-100-disk-0,")
    assert config["net0"] != fake.vms[9000].config["net0"] and len(config["digest"]) == 40
    resources = await call(lambda: api.cluster.resources.get(type="vm"))
    by_id = {entry["vmid"]: entry for entry in resources}
    assert by_id[9000]["template"] == 1 and by_id[100]["template"] == 0
    assert by_id[100]["id"] == "qemu/100" and by_id[100]["type"] == "qemu"
    assert by_id[100]["maxdisk"] == 10 * GiB and by_id[100]["status"] == "stopped"
    listed = await call(lambda: api.nodes("pve1").qemu.get())
    assert {entry["vmid"] for entry in listed} == {100, 9000}
    assert await call(lambda: api.cluster.nextid.get()) == "101"


async def test_clone_refusals(fake: FakeProxmox) -> None:
    api = client(fake)
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(9000).clone.post(name="x"))
    assert caught.value.status_code == 400
    assert caught.value.errors == {"newid": "property is missing and it is not optional"}
    with pytest.raises(ResourceException) as caught:
        await clone(fake, api, 9000)
    assert caught.value.status_code == 500
    assert caught.value.content == "unable to create VM 9000: config file already exists"
    with pytest.raises(ResourceException) as caught:
        await clone(fake, api, 101, full=0, storage="local-lvm")
    assert caught.value.content == "parameter 'storage' not allowed for linked clones"
    await wait_task(api, "pve1", await clone(fake, api, 102, full=1, storage="local-lvm"))
    assert fake.vms[102].config["scsi0"].startswith("local-lvm:vm-102-disk-0,")
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(102).clone.post(newid=103, full=0))
    assert caught.value.status_code == 500
    assert caught.value.content.startswith("Linked clone feature is not supported")
    assert 101 not in fake.vms and 103 not in fake.vms


async def test_clone_failure_knob_removes_the_vm(fake: FakeProxmox) -> None:
    api = client(fake)
    fake.fail_next_task("qmclone", "clone failed: out of space")
    upid = await clone(fake, api, 100)
    assert 100 in fake.vms
    done = await wait_task(api, "pve1", upid)
    assert (done["status"], done["exitstatus"]) == ("stopped", "clone failed: out of space")
    assert 100 not in fake.vms
    log = [line["t"] for line in await call(lambda: api.nodes("pve1").tasks(upid).log.get())]
    assert (
        "clone failed: out of space" in log and log[-1] == "TASK ERROR: clone failed: out of space"
    )
    # Only the next one: the following clone works.
    assert (await wait_task(api, "pve1", await clone(fake, api, 100)))["exitstatus"] == "OK"


async def test_hang_knob_keeps_the_task_running(fake: FakeProxmox) -> None:
    api = client(fake)
    fake.hang_next_task("qmclone")
    upid = await clone(fake, api, 100)
    await asyncio.sleep(0.2)
    status = await call(lambda: api.nodes("pve1").tasks(upid).status.get())
    assert status["status"] == "running" and fake.tasks[upid].finishes_at is None
    assert fake.vms[100].lock == "clone"


async def test_task_lookups(fake: FakeProxmox) -> None:
    api = client(fake)
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").tasks("garbage").status.get())
    assert caught.value.status_code == 400
    assert caught.value.errors == {"upid": "unable to parse worker upid"}
    unknown = "UPID:pve1:00001234:00ABCDEF:65000000:qmstart:100:digi@pve!digi:"
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").tasks(unknown).status.get())
    assert caught.value.errors == {"upid": "no such task"}


async def test_sshkeys_must_be_urlencoded_once_more(fake: FakeProxmox) -> None:
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    config = api.nodes("pve1").qemu(100).config
    with pytest.raises(ResourceException) as caught:
        await call(lambda: config.put(sshkeys=KEYS))  # only the form layer's encoding
    assert caught.value.status_code == 400
    assert caught.value.content == "Parameter verification failed."
    assert caught.value.errors is not None
    assert caught.value.errors["sshkeys"].startswith("invalid format - invalid urlencoded string:")
    with pytest.raises(ResourceException):  # '+' for spaces is form encoding, not accepted
        await call(lambda: config.put(sshkeys=urllib.parse.quote_plus(KEYS)))
    assert "sshkeys" not in fake.vms[100].config

    encoded = urllib.parse.quote(KEYS, safe="")
    assert (
        await call(
            lambda: config.put(
                sshkeys=encoded,
                ciuser="digi",
                cipassword="s3cret",
                ipconfig0="ip=10.0.0.5/24,gw=10.0.0.1",
                nameserver="10.0.0.1",
                cores=4,
                memory=4096,
            )
        )
        is None
    )
    vm = fake.vms[100]
    assert vm.ssh_keys == KEYS and vm.config["sshkeys"] == encoded
    assert vm.cipassword_plain == "s3cret" and vm.config["cipassword"].startswith("$5$")
    answered = await call(lambda: config.get())
    assert answered["sshkeys"] == encoded and answered["cipassword"] == "**********"
    assert answered["ipconfig0"] == "ip=10.0.0.5/24,gw=10.0.0.1" and answered["cores"] == 4
    assert fake.requests[-2] == (
        "PUT",
        "/nodes/pve1/qemu/100/config",
        {
            "sshkeys": encoded,
            "ciuser": "digi",
            "cipassword": "s3cret",
            "ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1",
            "nameserver": "10.0.0.1",
            "cores": "4",
            "memory": "4096",
        },
    )


async def test_config_validation_and_async_post(fake: FakeProxmox) -> None:
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    config = api.nodes("pve1").qemu(100).config
    with pytest.raises(ResourceException) as caught:
        await call(lambda: config.put(ipconfig0="ip=10.0.0.5", cores=0, bogus=1))
    assert caught.value.errors is not None
    assert set(caught.value.errors) == {"ipconfig0", "cores", "bogus"}
    upid = await call(lambda: config.post(ipconfig0="ip=dhcp", description="hello"))
    assert upid.split(":")[5] == "qmconfig"
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "OK"
    assert fake.vms[100].config["ipconfig0"] == "ip=dhcp"


async def test_resize_grows_and_refuses_to_shrink(fake: FakeProxmox) -> None:
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    resize = api.nodes("pve1").qemu(100).resize
    upid = await call(lambda: resize.put(disk="scsi0", size="+22G"))
    assert upid.split(":")[5] == "resize"
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "OK"
    assert fake.vms[100].disks["scsi0"] == 32 * GiB
    assert fake.vms[100].config["scsi0"].endswith(",size=32G")
    upid = await call(lambda: resize.put(disk="scsi0", size="40G"))
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "OK"
    assert fake.vms[100].disks["scsi0"] == 40 * GiB
    # The checks run in the worker, as in qemu-server: the call succeeds, the task fails.
    upid = await call(lambda: resize.put(disk="scsi0", size="20G"))
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "shrinking disks is not supported"
    upid = await call(lambda: resize.put(disk="scsi1", size="+1G"))
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "disk 'scsi1' does not exist"
    assert fake.vms[100].disks["scsi0"] == 40 * GiB
    with pytest.raises(ResourceException) as caught:
        await call(lambda: resize.put(disk="sda", size="+1G"))
    assert caught.value.status_code == 400 and caught.value.errors is not None
    assert "disk" in caught.value.errors


async def test_start_then_agent_interfaces(fake: FakeProxmox) -> None:
    fake.vm_address = "10.20.30.40"
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    vm = api.nodes("pve1").qemu(100)
    with pytest.raises(ResourceException) as caught:
        await call(lambda: vm.agent("network-get-interfaces").get())
    assert caught.value.status_code == 500 and caught.value.content == "VM 100 is not running"
    upid = await call(lambda: vm.status.start.post())
    assert upid.split(":")[5:7] == ["qmstart", "100"]
    current = await call(lambda: vm.status.current.get())
    assert current["status"] == "stopped" and current["agent"] == 1
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "OK"
    current = await call(lambda: vm.status.current.get())
    assert current["status"] == "running" and current["qmpstatus"] == "running"
    assert current["maxmem"] == 2048 * 1024**2 and current["mem"] > 0
    answer = await call(lambda: vm.agent("network-get-interfaces").get())
    interfaces = {item["name"]: item for item in answer["result"]}
    assert interfaces["lo"]["ip-addresses"][0]["ip-address"] == "127.0.0.1"
    eth0 = interfaces["eth0"]
    assert eth0["hardware-address"] == fake.vms[100].config["net0"].split(",")[0][7:].lower()
    assert eth0["ip-addresses"][0] == {
        "ip-address": "10.20.30.40",
        "ip-address-type": "ipv4",
        "prefix": 24,
    }
    assert eth0["ip-addresses"][1]["ip-address"].startswith("fe80::")
    # A second start fails in the worker.
    again = await call(lambda: vm.status.start.post())
    assert (await wait_task(api, "pve1", again))["exitstatus"] == "VM 100 already running"


async def test_agent_unavailable_and_delay(fake: FakeProxmox) -> None:
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    vm = api.nodes("pve1").qemu(100)
    fake.agent_delay_seconds = 0.3
    await wait_task(api, "pve1", await call(lambda: vm.status.start.post()))
    with pytest.raises(ResourceException) as caught:
        await call(lambda: vm.agent("network-get-interfaces").get())
    assert (caught.value.status_code, caught.value.content) == (
        500,
        "QEMU guest agent is not running",
    )
    await asyncio.sleep(0.3)
    await call(lambda: vm.agent("network-get-interfaces").get())
    fake.vms[100].agent_available = False
    with pytest.raises(ResourceException) as caught:
        await call(lambda: vm.agent("network-get-interfaces").get())
    assert caught.value.content == "QEMU guest agent is not running"
    fake.vms[100].agent_available = True
    fake.agent_available = False
    with pytest.raises(ResourceException):
        await call(lambda: vm.agent("network-get-interfaces").get())


async def test_rrddata(fake: FakeProxmox) -> None:
    api = client(fake)
    points = await call(lambda: api.nodes("pve1").qemu(9000).rrddata.get(timeframe="hour"))
    assert len(points) == 70
    assert {
        "time",
        "cpu",
        "maxcpu",
        "mem",
        "maxmem",
        "disk",
        "maxdisk",
        "netin",
        "netout",
        "diskread",
        "diskwrite",
    } <= set(points[0])
    assert [b["time"] - a["time"] for a, b in itertools.pairwise(points)] == [60] * 69
    again = await call(lambda: api.nodes("pve1").qemu(9000).rrddata.get(timeframe="hour"))
    assert again[0] == points[0] or again[0]["time"] > points[0]["time"]
    day = await call(lambda: api.nodes("pve1").qemu(9000).rrddata.get(timeframe="day", cf="MAX"))
    assert day[1]["time"] - day[0]["time"] == 1800
    with pytest.raises(ResourceException) as caught:
        await call(lambda: api.nodes("pve1").qemu(9000).rrddata.get(timeframe="minute"))
    assert caught.value.status_code == 400 and caught.value.errors is not None
    assert caught.value.errors["timeframe"].startswith("value 'minute' does not have a value")


async def test_destroy_running_vm_refused_then_stop_and_destroy(fake: FakeProxmox) -> None:
    api = client(fake)
    await wait_task(api, "pve1", await clone(fake, api, 100))
    vm = api.nodes("pve1").qemu(100)
    await wait_task(api, "pve1", await call(lambda: vm.status.start.post()))
    with pytest.raises(ResourceException) as caught:
        await call(lambda: vm.delete(purge=1, **{"destroy-unreferenced-disks": 1}))
    assert (caught.value.status_code, caught.value.content) == (
        500,
        "VM 100 is running - destroy failed",
    )
    stop = await call(lambda: vm.status.stop.post())
    assert (await wait_task(api, "pve1", stop))["exitstatus"] == "OK"
    assert fake.vms[100].status == "stopped"
    upid = await call(lambda: vm.delete(purge=1, **{"destroy-unreferenced-disks": 1}))
    assert upid.split(":")[5:7] == ["qmdestroy", "100"]
    assert 100 in fake.vms
    assert (await wait_task(api, "pve1", upid))["exitstatus"] == "OK"
    assert 100 not in fake.vms
    deletes = [entry for entry in fake.requests if entry[0] == "DELETE"]
    assert deletes[-1] == (
        "DELETE",
        "/nodes/pve1/qemu/100",
        {"purge": "1", "destroy-unreferenced-disks": "1"},
    )


async def test_down_answers_503(fake: FakeProxmox) -> None:
    fake.down = True
    with pytest.raises(ResourceException) as caught:
        await call(lambda: client(fake).version.get())
    assert caught.value.status_code == 503
