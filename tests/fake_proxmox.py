"""A fake Proxmox VE API server (HTTPS, API-token auth) for tests that drive proxmoxer.

Written from the PVE API schema and from the Perl that answers it (pve-http-server, pve-manager,
qemu-server, pve-common): paths, parameter names, answer shapes, where a check runs (before the
worker is forked, so the call fails, or inside it, so the task fails) and the error texts.
Everything happens in memory; tasks finish on event-loop timers ``task_seconds`` after they start.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import itertools
import json
import math
import re
import ssl
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GiB = 1024**3
MiB = 1024**2

# The GET /version answer of a current PVE 8 node.
PVE_VERSION = {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}

# pve-common JSONSchema: the 'urlencoded' format (sshkeys) accepts only these characters.
URLENCODED_RE = re.compile(r"^[-%a-zA-Z0-9_.!~*'()]*$")
# pve-common UPID.pm decode().
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)
DNS_NAME_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$"
)
DRIVE_RE = re.compile(
    r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[1-2][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$"
)
SIZE_RE = re.compile(r"^(\+)?(\d+(?:\.\d+)?)([KMGT])?$")
UNITS = {"": 1, "K": 1024, "M": MiB, "G": GiB, "T": 1024**4}
# qemu-server RRD archives (PVE 8): step in seconds for each timeframe, 70 rows each.
RRD_STEPS = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}
RRD_ROWS = 70

# Config keys PUT/POST /config accepts here (the real schema has many more; an unknown key gets
# the same 400 PVE gives for any property outside its schema).
CONFIG_STRING_KEYS = {
    "ciuser",
    "cipassword",
    "citype",
    "ciupgrade",
    "sshkeys",
    "nameserver",
    "searchdomain",
    "description",
    "name",
    "tags",
    "cpu",
    "ostype",
    "boot",
    "scsihw",
    "vga",
    "agent",
    "memory",
    "machine",
    "bios",
    "hotplug",
    "cicustom",
}
CONFIG_INT_KEYS = {"cores": 1, "sockets": 1, "vcpus": 1, "balloon": 0, "cpuunits": 1}
CONFIG_BOOL_KEYS = {"onboot", "numa", "protection", "tablet", "template"}
CONFIG_PATTERN_KEYS = re.compile(r"^(ipconfig\d+|net\d+|serial\d|" + DRIVE_RE.pattern[2:-2] + r")$")
CONFIG_META = {"delete", "digest", "revert", "skiplock", "background_delay"}


class PveError(Exception):
    """An API failure as PVE reports it: status, message (reason phrase) and per-field errors."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message if message.endswith("\n") else message + "\n"
        self.errors = errors


def param_error(errors: dict[str, str]) -> PveError:
    """pve-common raise_param_exc: 400 'Parameter verification failed.' with per-field texts."""
    return PveError(400, "Parameter verification failed.", errors)


def die(message: str) -> PveError:
    """A plain Perl die in an API handler: 500 with the message as reason phrase."""
    return PveError(500, message)


class TaskFailed(Exception):
    """Raised by a worker body: the task ends with this exit status ('TASK ERROR: ...')."""


@dataclass
class FakeVm:
    vmid: int
    node: str
    name: str
    template: bool
    config: dict[str, str]
    status: str = "stopped"
    disks: dict[str, int] = field(default_factory=dict)
    agent_available: bool = True
    started_at: float | None = None
    # The address the guest agent reports for eth0 (None: the server's vm_address).
    address: str | None = None
    # cipassword is stored hashed like PVE does; the plain text, for tests to compare.
    cipassword_plain: str | None = None

    @property
    def lock(self) -> str | None:
        return self.config.get("lock")

    @property
    def ssh_keys(self) -> str | None:
        """The keys of config['sshkeys'] decoded (PVE stores and answers them url-encoded)."""
        encoded = self.config.get("sshkeys")
        return None if encoded is None else urllib.parse.unquote(encoded)

    @property
    def maxmem(self) -> int:
        return _memory_mib(self.config.get("memory", "512")) * MiB

    @property
    def cpus(self) -> int:
        return int(self.config.get("cores", "1")) * int(self.config.get("sockets", "1"))

    @property
    def maxdisk(self) -> int:
        boot = _boot_disk(self.config)
        return self.disks.get(boot, 0) if boot else 0

    def uptime(self) -> int:
        if self.status != "running" or self.started_at is None:
            return 0
        return int(time.time() - self.started_at)


@dataclass
class FakeTask:
    upid: str
    node: str
    type: str
    id: str
    status: str = "running"
    exitstatus: str | None = None
    log: list[str] = field(default_factory=list)
    finishes_at: float | None = None  # None: hangs (hang_next_task)
    user: str = ""
    pid: int = 0
    pstart: int = 0
    starttime: int = 0
    endtime: int | None = None
    # The worker body (raises TaskFailed to fail) and what undoing a failure needs.
    work: Callable[[], None] | None = field(default=None, repr=False)
    on_failure: Callable[[], None] | None = field(default=None, repr=False)
    forced_error: str | None = field(default=None, repr=False)


@dataclass
class FakeNode:
    name: str
    status: str = "online"
    maxcpu: int = 16
    maxmem: int = 64 * GiB
    maxdisk: int = 100 * GiB
    started_at: float = field(default_factory=lambda: time.time() - 86400 * 12)


def _memory_mib(value: str) -> int:
    # PVE 8 'memory' is a property string: "2048" or "current=2048".
    for part in value.split(","):
        part = part.removeprefix("current=")
        if part.isdigit():
            return int(part)
    return 512


def _boot_disk(config: dict[str, str]) -> str | None:
    order = config.get("boot", "")
    if order.startswith("order="):
        for name in order.removeprefix("order=").split(";"):
            if name in config and "media=cdrom" not in config[name]:
                return name
    for key in sorted(config):
        if DRIVE_RE.match(key) and "media=cdrom" not in config[key]:
            return key
    return None


def format_size(size: int) -> str:
    """pve-common format_size as print_drive writes it into 'size='."""
    for unit, factor in (("T", 1024**4), ("G", GiB), ("M", MiB), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _with_size(drive: str, size: int) -> str:
    parts = [part for part in drive.split(",") if not part.startswith("size=")]
    return ",".join([*parts, f"size={format_size(size)}"])


def _random_mac(seed: int) -> str:
    # Proxmox's default OUI for generated MACs.
    digest = hashlib.sha256(f"mac-{seed}".encode()).digest()
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def _link_local(mac: str) -> str:
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{(eui[i] << 8) | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return "fe80::" + ":".join(groups)


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise param_error({name: f"type check ('boolean') failed - got '{value}'"})


def _int(name: str, value: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if not re.fullmatch(r"[+-]?\d+", value):
        raise param_error({name: f"type check ('integer') failed - got '{value}'"})
    number = int(value)
    if minimum is not None and number < minimum:
        raise param_error({name: f"value must have a minimum value of {minimum}"})
    if maximum is not None and number > maximum:
        raise param_error({name: f"value must have a maximum value of {maximum}"})
    return number


def _vmid(name: str, value: str) -> int:
    return _int(name, value, 100, 999999999)


def _enum(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        listing = ", ".join(allowed)
        raise param_error(
            {name: f"value '{value}' does not have a value in the enumeration '{listing}'"}
        )
    return value


def _param_errors(
    params: dict[str, str], allowed: set[str], required: Sequence[str] = ()
) -> dict[str, str]:
    """JSONSchema validation of the parameter set: additionalProperties => 0 and requireds."""
    errors = {
        key: "property is not defined in schema and the schema does not allow additional properties"
        for key in params
        if key not in allowed
    }
    for key in required:
        if key not in params:
            errors[key] = "property is missing and it is not optional"
    return errors


def _check_params(params: dict[str, str], allowed: set[str], required: Sequence[str] = ()) -> None:
    errors = _param_errors(params, allowed, required)
    if errors:
        raise param_error(errors)


def _validate_ipconfig(key: str, value: str) -> None:
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, item = part.partition("=")
        if not sep or name not in ("ip", "gw", "ip6", "gw6"):
            raise param_error(
                {
                    key: f"invalid format - format error\n{key}.{name}: property is "
                    "not defined in schema and the schema does not allow "
                    "additional properties\n"
                }
            )
        fields[name] = item
    ip = fields.get("ip")
    if ip is not None and ip != "dhcp":
        try:
            ipaddress.IPv4Interface(ip)
            if "/" not in ip:
                raise ValueError(ip)
        except ValueError:
            raise param_error(
                {
                    key: f"invalid format - format error\n{key}.ip: invalid format - "
                    "value does not look like a valid ipv4 network "
                    "configuration\n"
                }
            ) from None
    gw = fields.get("gw")
    if gw is not None:
        try:
            ipaddress.IPv4Address(gw)
        except ValueError:
            raise param_error(
                {
                    key: f"invalid format - format error\n{key}.gw: invalid format - "
                    f"value does not look like a valid IPv4 address\n"
                }
            ) from None
    ip6 = fields.get("ip6")
    if ip6 is not None and ip6 not in ("dhcp", "auto"):
        try:
            ipaddress.IPv6Interface(ip6)
        except ValueError:
            raise param_error(
                {
                    key: f"invalid format - format error\n{key}.ip6: invalid format - "
                    "value does not look like a valid ipv6 network "
                    "configuration\n"
                }
            ) from None


def _validate_ssh_keys(keys: str) -> None:
    # PVE::Tools::validate_ssh_public_keys runs ssh-keygen -l on every line.
    for line in keys.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(?:\S+\s+)?((?:ssh|ecdsa|sk)-\S+)\s+([A-Za-z0-9+/=]+)(?:\s.*)?$", line)
        if match is None:
            raise die("SSH public key validation error")


class FakeProxmox:
    """A Proxmox VE API on 127.0.0.1 over HTTPS with its own test CA."""

    def __init__(
        self,
        directory: Path,
        *,
        token_id: str = "digi@pve!digi",
        token_secret: str = "5e0ad3c1-7b2f-4e4b-9a55-0c6f2d8b1a93",
        nodes: Sequence[str] = ("pve1",),
        template_vmid: int = 9000,
        template_node: str = "pve1",
        task_seconds: float = 0.2,
        vm_address: str = "127.0.0.1",
    ) -> None:
        if template_node not in nodes:
            raise ValueError(f"template node {template_node!r} is not one of {list(nodes)}")
        self.directory = Path(directory)
        self.token_id = token_id
        self.token_secret = token_secret
        self.task_seconds = task_seconds
        self.vm_address = vm_address
        self.host = "127.0.0.1"
        self.port = 0
        self.url = ""
        self.ca_file = self.directory / "proxmox-ca.pem"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.nodes: dict[str, FakeNode] = {name: FakeNode(name) for name in nodes}
        self.vms: dict[int, FakeVm] = {}
        self.tasks: dict[str, FakeTask] = {}
        # Knobs.
        self.agent_available = True
        self.agent_delay_seconds = 0.0
        self.down = False
        # Real pveproxy holds every refused login for 3 s; tests want it quick.
        self.auth_failure_delay = 0.0
        # Pools 'pool=' may name, and whether the disks sit on shared storage (needed to clone
        # onto another node with 'target=').
        self.pools: set[str] = {"digi"}
        self.shared_storage = False
        self._fail_next: dict[str, deque[str]] = {}
        self._hang_next: dict[str, int] = {}
        self._pid = itertools.count(0x1A2B0)
        self._timers: list[asyncio.TimerHandle] = []
        self._runner: web.AppRunner | None = None
        self._fingerprint = ""
        self._add_template(template_vmid, template_node)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeProxmox:
        self.directory.mkdir(parents=True, exist_ok=True)
        context = self._make_tls()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"https://{self.host}:{self.port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _make_tls(self) -> ssl.SSLContext:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "digi-test-ca"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Manager CA"),
            ]
        )
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address(self.host)),
            *(x509.DNSName(node) for node in self.nodes),
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, next(iter(self.nodes)))])
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_file.write_bytes(ca_cert.public_bytes(pem))
        cert_file = self.directory / "pve-ssl.pem"
        key_file = self.directory / "pve-ssl.key"
        cert_file.write_bytes(cert.public_bytes(pem))
        key_file.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        digest = cert.fingerprint(hashes.SHA256())
        self._fingerprint = ":".join(f"{b:02X}" for b in digest)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context

    # ---------------------------------------------------------------- knobs

    def fail_next_task(self, task_type: str, message: str) -> None:
        """The next task of that type ends stopped with exitstatus=message (and its log says so)."""
        self._fail_next.setdefault(task_type, deque()).append(message)

    def hang_next_task(self, task_type: str) -> None:
        """The next task of that type stays 'running' for good."""
        self._hang_next[task_type] = self._hang_next.get(task_type, 0) + 1

    # ---------------------------------------------------------------- state helpers

    def _add_template(self, vmid: int, node: str) -> None:
        config = {
            "name": "digi-template",
            "agent": "1",
            "boot": "order=scsi0",
            "cores": "2",
            "sockets": "1",
            "memory": "2048",
            "cpu": "x86-64-v2-AES",
            "ostype": "l26",
            "scsihw": "virtio-scsi-single",
            "scsi0": f"local-lvm:base-{vmid}-disk-0,iothread=1,size=10G",
            "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom",
            "net0": f"virtio={_random_mac(vmid)},bridge=vmbr0,firewall=1",
            "serial0": "socket",
            "vga": "serial0",
            "smbios1": f"uuid={uuid.UUID(int=vmid)}",
            "vmgenid": str(uuid.UUID(int=vmid + 1)),
            "template": "1",
        }
        self.vms[vmid] = FakeVm(
            vmid=vmid,
            node=node,
            name=config["name"],
            template=True,
            config=config,
            disks={"scsi0": 10 * GiB},
        )

    def _vm(self, node: str, vmid: int) -> FakeVm:
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise die(f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    @staticmethod
    def _check_lock(vm: FakeVm) -> None:
        if vm.lock:
            raise die(f"VM is locked ({vm.lock})")

    def _digest(self, vm: FakeVm) -> str:
        text = "".join(f"{key}: {value}\n" for key, value in sorted(vm.config.items()))
        return hashlib.sha1(text.encode()).hexdigest()

    def _vm_mem(self, vm: FakeVm) -> int:
        return int(vm.maxmem * 0.35) if vm.status == "running" else 0

    def _vm_cpu(self, vm: FakeVm) -> float:
        return 0.0123 if vm.status == "running" else 0.0

    def _node_usage(self, node: FakeNode) -> tuple[int, float]:
        running = [
            vm for vm in self.vms.values() if vm.node == node.name and vm.status == "running"
        ]
        mem = 3 * GiB + sum(self._vm_mem(vm) for vm in running)
        cpu = min(1.0, 0.01 + sum(self._vm_cpu(vm) * vm.cpus for vm in running) / node.maxcpu)
        return mem, round(cpu, 6)

    def _agent_enabled(self, vm: FakeVm) -> bool:
        value = vm.config.get("agent", "0")
        first = value.split(",")[0].removeprefix("enabled=")
        return first in ("1", "true", "yes", "on")

    # ---------------------------------------------------------------- tasks

    def _task(
        self,
        node: str,
        task_type: str,
        task_id: str,
        work: Callable[[], None] | None = None,
        *,
        log: Sequence[str] = (),
        on_failure: Callable[[], None] | None = None,
    ) -> str:
        """fork_worker: a UPID at once, the work done when the task ends."""
        now = time.time()
        node_info = self.nodes[node]
        pid = next(self._pid)
        pstart = int((now - node_info.started_at) * 100)  # clock ticks since boot
        starttime = int(now)
        upid = (
            f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{task_id}:"
            f"{self.token_id}:"
        )
        task = FakeTask(
            upid=upid,
            node=node,
            type=task_type,
            id=task_id,
            log=list(log),
            user=self.token_id,
            pid=pid,
            pstart=pstart,
            starttime=starttime,
            work=work,
            on_failure=on_failure,
        )
        queue = self._fail_next.get(task_type)
        if queue:
            task.forced_error = queue.popleft()
        self.tasks[upid] = task
        if self._hang_next.get(task_type, 0) > 0:
            self._hang_next[task_type] -= 1
            return upid
        task.finishes_at = now + self.task_seconds
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.task_seconds, self._finish, upid))
        return upid

    def _finish(self, upid: str) -> None:
        task = self.tasks.get(upid)
        if task is None or task.status != "running":
            return
        error = task.forced_error
        if error is None and task.work is not None:
            try:
                task.work()
            except (TaskFailed, PveError) as failure:
                error = str(failure).rstrip("\n")
        if error is not None:
            if task.on_failure is not None:
                task.on_failure()
            task.log.append(error)
            task.log.append(f"TASK ERROR: {error}")
            task.exitstatus = error
        else:
            task.log.append("TASK OK")
            task.exitstatus = "OK"
        task.status = "stopped"
        task.endtime = int(time.time())

    def _advance(self) -> None:
        # Timers fire on the loop; a request handled in the same tick still sees finished tasks.
        now = time.time()
        for task in list(self.tasks.values()):
            finishes_at = task.finishes_at
            if task.status == "running" and finishes_at is not None and finishes_at <= now:
                self._finish(task.upid)

    def _task_for(self, node: str, upid: str) -> FakeTask:
        if UPID_RE.match(upid) is None:
            raise param_error({"upid": "unable to parse worker upid"})
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise param_error({"upid": "no such task"})
        return task

    # ---------------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return self._respond(503, {"data": None}, "Service Unavailable")
        prefix = "/api2/json"
        if not request.path.startswith(prefix + "/") and request.path != prefix:
            return web.Response(status=501, reason=f"no such file '{request.path}'")
        path = request.path[len(prefix) :] or "/"
        refusal = self._authenticate(request.headers.get("Authorization"))
        if refusal is not None:
            if self.auth_failure_delay:
                await asyncio.sleep(self.auth_failure_delay)
            return self._respond(401, {"data": None}, refusal)
        params = dict(urllib.parse.parse_qsl(request.query_string, keep_blank_values=True))
        if request.method in ("POST", "PUT"):
            body = await request.text()
            form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            params = {**form, **params}
        elif request.can_read_body and await request.read():
            return self._error(PveError(501, f"Unexpected content for method '{request.method}'"))
        self.requests.append((request.method, path, dict(params)))
        self._advance()
        try:
            data, extra = self._dispatch(request.method, path, params)
        except PveError as error:
            return self._error(error)
        return self._respond(200, {"data": data, **extra}, "OK")

    def _authenticate(self, header: str | None) -> str | None:
        """None when the token is good, else the 401 reason PVE's auth handler dies with."""
        match = re.search(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)", header or "")
        if match is None:
            return "No ticket"
        token = urllib.parse.unquote(match.group(1))
        tokenid, sep, secret = token.rpartition("=")
        if not sep:
            return "no tokenid specified"
        user, bang, name = tokenid.rpartition("!")
        expected_user, _, expected_name = self.token_id.rpartition("!")
        if not bang or "@" not in user:
            return f"invalid API token ID '{tokenid}'"
        if user != expected_user:
            return f"no such user ('{user}')"
        if name != expected_name:
            return f"no such token '{name}' for user '{user}'"
        if secret != self.token_secret:
            return "invalid token value!"
        return None

    @staticmethod
    def _respond(status: int, body: dict[str, Any], reason: str) -> web.Response:
        return web.Response(
            status=status,
            reason=reason.split("\n", 1)[0],
            body=json.dumps(body).encode(),
            content_type="application/json",
            charset="UTF-8",
        )

    def _error(self, error: PveError) -> web.Response:
        body: dict[str, Any] = {"data": None, "message": error.message}
        if error.errors:
            body["errors"] = error.errors
        return self._respond(error.status, body, error.message)

    def _dispatch(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[Any, dict[str, Any]]:
        for route_method, pattern, handler in self._routes():
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                groups = match.groupdict()
                if "node" in groups and groups["node"] not in self.nodes:
                    node = groups["node"]
                    raise die(
                        f"hostname lookup '{node}' failed - failed to get address info for: "
                        f"{node}: Name or service not known"
                    )
                if "vmid" in groups:
                    _vmid("vmid", groups["vmid"])
                result = handler(groups, params)
                if isinstance(result, tuple):
                    return result
                return result, {}
        raise PveError(501, f"Method '{method} {path}' not implemented")

    def _routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., Any]]]:
        vm = r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>[^/]+)"
        table: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", r"/version", self._get_version),
            ("GET", r"/nodes", self._get_nodes),
            ("GET", r"/nodes/(?P<node>[^/]+)/status", self._get_node_status),
            ("GET", r"/cluster/nextid", self._get_nextid),
            ("GET", r"/cluster/resources", self._get_resources),
            ("GET", r"/nodes/(?P<node>[^/]+)/qemu", self._get_qemu_list),
            ("POST", vm + r"/clone", self._post_clone),
            ("GET", vm + r"/config", self._get_config),
            ("PUT", vm + r"/config", self._put_config),
            ("POST", vm + r"/config", self._post_config),
            ("PUT", vm + r"/resize", self._put_resize),
            ("GET", vm + r"/status/current", self._get_status_current),
            ("POST", vm + r"/status/(?P<action>start|stop|shutdown|reboot)", self._post_power),
            ("GET", vm + r"/agent/network-get-interfaces", self._get_agent_interfaces),
            ("GET", vm + r"/rrddata", self._get_rrddata),
            ("DELETE", vm, self._delete_vm),
            ("GET", r"/nodes/(?P<node>[^/]+)/tasks", self._get_tasks),
            ("GET", r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/status", self._get_task_status),
            ("GET", r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/log", self._get_task_log),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # ---------------------------------------------------------------- cluster and nodes

    def _get_version(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, set())
        return dict(PVE_VERSION)

    def _node_entry(self, node: FakeNode) -> dict[str, Any]:
        mem, cpu = self._node_usage(node)
        return {
            "node": node.name,
            "status": node.status,
            "cpu": cpu,
            "maxcpu": node.maxcpu,
            "mem": mem,
            "maxmem": node.maxmem,
            "disk": 7 * GiB,
            "maxdisk": node.maxdisk,
            "uptime": int(time.time() - node.started_at),
            "level": "",
            "type": "node",
            "id": f"node/{node.name}",
            "ssl_fingerprint": self._fingerprint,
        }

    def _get_nodes(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, set())
        return [self._node_entry(node) for node in self.nodes.values()]

    def _get_node_status(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"node"})
        node = self.nodes[groups["node"]]
        mem, cpu = self._node_usage(node)
        return {
            "uptime": int(time.time() - node.started_at),
            "cpu": cpu,
            "wait": 0.0004,
            "idle": 0,
            "loadavg": ["0.12", "0.09", "0.05"],
            "memory": {"total": node.maxmem, "used": mem, "free": node.maxmem - mem},
            "swap": {"total": 8 * GiB, "used": 0, "free": 8 * GiB},
            "rootfs": {
                "total": node.maxdisk,
                "used": 7 * GiB,
                "free": node.maxdisk - 7 * GiB,
                "avail": node.maxdisk - 12 * GiB,
            },
            "ksm": {"shared": 0},
            "cpuinfo": {
                "cpus": node.maxcpu,
                "cores": node.maxcpu // 2,
                "sockets": 1,
                "model": "AMD EPYC 7302P 16-Core Processor",
                "mhz": "3000.000",
                "hvm": "1",
                "user_hz": 100,
                "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr",
            },
            "kversion": "Linux 6.8.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2",
            "pveversion": f"pve-manager/{PVE_VERSION['version']}/{PVE_VERSION['repoid']}",
            "boot-info": {"mode": "efi", "secureboot": 0},
            "current-kernel": {
                "sysname": "Linux",
                "release": "6.8.8-2-pve",
                "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2",
                "machine": "x86_64",
            },
        }

    def _get_nextid(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"vmid"})
        if "vmid" in params:
            vmid = _vmid("vmid", params["vmid"])
            if vmid in self.vms:
                raise param_error({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        vmid = 100
        while vmid in self.vms:
            vmid += 1
        return str(vmid)

    def _vm_entry(self, vm: FakeVm) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "vmid": vm.vmid,
            "name": vm.name,
            "status": vm.status,
            "cpu": self._vm_cpu(vm),
            "cpus": vm.cpus,
            "mem": self._vm_mem(vm),
            "maxmem": vm.maxmem,
            "disk": 0,
            "maxdisk": vm.maxdisk,
            "uptime": vm.uptime(),
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
        }
        if vm.status == "running":
            entry["pid"] = 100000 + vm.vmid
        if vm.lock:
            entry["lock"] = vm.lock
        return entry

    def _get_resources(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"type"})
        kind = params.get("type")
        if kind is not None:
            _enum("type", kind, ["vm", "storage", "node", "sdn"])
        result: list[dict[str, Any]] = []
        if kind in (None, "node"):
            result.extend(self._node_entry(node) for node in self.nodes.values())
        if kind in (None, "vm"):
            for vm in sorted(self.vms.values(), key=lambda item: item.vmid):
                entry = self._vm_entry(vm)
                entry.pop("cpus")
                entry.pop("pid", None)
                entry.update(
                    id=f"qemu/{vm.vmid}",
                    type="qemu",
                    node=vm.node,
                    template=1 if vm.template else 0,
                    maxcpu=vm.cpus,
                )
                result.append(entry)
        if kind in (None, "storage"):
            for node in self.nodes.values():
                result.append(
                    {
                        "id": f"storage/{node.name}/local-lvm",
                        "type": "storage",
                        "storage": "local-lvm",
                        "node": node.name,
                        "status": "available",
                        "plugintype": "lvmthin",
                        "content": "rootdir,images",
                        "shared": 1 if self.shared_storage else 0,
                        "disk": sum(
                            size
                            for vm in self.vms.values()
                            if vm.node == node.name
                            for size in vm.disks.values()
                        ),
                        "maxdisk": 500 * GiB,
                    }
                )
        return result

    def _get_qemu_list(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"full"})
        if "full" in params:
            _bool("full", params["full"])
        result = []
        for vm in sorted(self.vms.values(), key=lambda item: item.vmid):
            if vm.node != groups["node"]:
                continue
            entry = self._vm_entry(vm)
            entry["qmpstatus"] = vm.status
            if vm.template:
                entry["template"] = 1
            result.append(entry)
        return result

    # ---------------------------------------------------------------- clone

    def _post_clone(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        allowed = {
            "newid",
            "name",
            "description",
            "pool",
            "snapname",
            "storage",
            "format",
            "full",
            "target",
            "bwlimit",
        }
        _check_params(params, allowed, required=["newid"])
        node, vmid = groups["node"], int(groups["vmid"])
        newid = _vmid("newid", params["newid"])
        name = params.get("name")
        if name is not None and DNS_NAME_RE.match(name) is None:
            raise param_error(
                {"name": "invalid format - value does not look like a valid DNS name\n"}
            )
        full_param = _bool("full", params["full"]) if "full" in params else None
        if "format" in params:
            _enum("format", params["format"], ["raw", "qcow2", "vmdk"])
        if "bwlimit" in params:
            _int("bwlimit", params["bwlimit"], 0)
        target = params.get("target")
        if target in (node, "localhost"):
            target = None
        storage = params.get("storage")
        pool = params.get("pool")
        # $load_and_check, run before the worker is forked: its dies are the call's 500s.
        if pool is not None and pool not in self.pools:
            raise die(f"pool '{pool}' does not exist")
        if target is not None and target not in self.nodes:
            raise die(f"no such cluster node '{target}'")
        if storage is not None:
            if storage == "local":
                raise param_error({"storage": "storage 'local' does not support vm images"})
            if storage != "local-lvm":
                raise die(f"storage '{storage}' does not exist")
        source = self._vm(node, vmid)
        self._check_lock(source)
        full = full_param if full_param is not None else not source.template
        if storage is not None and not full:
            raise die("parameter 'storage' not allowed for linked clones")
        if "format" in params and not full:
            raise die("parameter 'format' not allowed for linked clones")
        if target is not None and not self.shared_storage:
            raise die(f"can't clone VM to node '{target}' (VM uses local storage)")
        if newid in self.vms:
            raise die(f"unable to create VM {newid}: config file already exists")
        drives = {key: value for key, value in source.config.items() if DRIVE_RE.match(key)}
        for key, value in drives.items():
            if "media=cdrom" in value:
                continue
            volid = value.split(",")[0]
            if not full and not source.template:
                raise die(f"Linked clone feature is not supported for '{volid}' ({key})")

        config: dict[str, str] = {}
        for key, value in source.config.items():
            if key in ("template", "lock") or key.startswith("unused"):
                continue
            if re.fullmatch(r"net\d+", key):
                model, _, rest = value.partition(",")
                kind = model.split("=")[0]
                config[key] = f"{kind}={_random_mac(newid * 100 + int(key[3:]))}," + rest
            elif key in drives:
                config[key] = self._cloned_drive(value, vmid, newid, full, storage)
            else:
                config[key] = value
        config["smbios1"] = f"uuid={uuid.uuid4()}"
        if "vmgenid" in config:
            config["vmgenid"] = str(uuid.uuid4())
        config["name"] = name or f"Copy-of-VM-{source.name or vmid}"
        if params.get("description"):
            config["description"] = params["description"]
        config["lock"] = "clone"
        clone = FakeVm(
            vmid=newid,
            node=node,
            name=config["name"],
            template=False,
            config=config,
            disks=dict(source.disks),
        )
        self.vms[newid] = clone
        final_node = target or node

        def work() -> None:
            clone.config.pop("lock", None)
            clone.node = final_node

        def undo() -> None:
            if self.vms.get(newid) is clone:
                del self.vms[newid]

        log = [
            f"create {'full' if full else 'linked'} clone of drive {key} ({value.split(',')[0]})"
            for key, value in sorted(drives.items())
            if "media=cdrom" not in value
        ]
        return self._task(node, "qmclone", str(vmid), work, log=log, on_failure=undo)

    @staticmethod
    def _cloned_drive(value: str, vmid: int, newid: int, full: bool, storage: str | None) -> str:
        volid, _, options = value.partition(",")
        store, _, volname = volid.partition(":")
        if "media=cdrom" in options:
            if volname.endswith("-cloudinit"):
                return f"{store}:vm-{newid}-cloudinit,{options}"
            return value
        disk_suffix = re.sub(r"^.*-(disk-\d+)$", r"\1", volname.split("/")[-1])
        if full:
            new_volid = f"{storage or store}:vm-{newid}-{disk_suffix}"
        else:
            new_volid = f"{store}:{volname.split('/')[0]}/vm-{newid}-{disk_suffix}"
        return f"{new_volid},{options}" if options else new_volid

    # ---------------------------------------------------------------- config

    def _get_config(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"current", "snapshot"})
        vm = self._vm(groups["node"], int(groups["vmid"]))
        result: dict[str, Any] = {}
        for key, value in vm.config.items():
            if key in CONFIG_INT_KEYS or key in CONFIG_BOOL_KEYS:
                result[key] = int(value)
            elif key == "cipassword":
                result[key] = "**********"
            else:
                result[key] = value
        result["digest"] = self._digest(vm)
        return result

    def _put_config(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        update = self._validate_config(groups, params, async_call=False)
        vm = self._vm(groups["node"], int(groups["vmid"]))
        self._check_lock(vm)
        self._apply_config(vm, params, update)
        return None

    def _post_config(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        update = self._validate_config(groups, params, async_call=True)
        node, vmid = groups["node"], int(groups["vmid"])
        self._vm(node, vmid)

        def work() -> None:
            vm = self._vm(node, vmid)
            self._check_lock(vm)
            self._apply_config(vm, params, update)

        return self._task(node, "qmconfig", str(vmid), work)

    def _validate_config(
        self, groups: dict[str, str], params: dict[str, str], *, async_call: bool
    ) -> dict[str, str]:
        allowed = CONFIG_META | CONFIG_STRING_KEYS | set(CONFIG_INT_KEYS) | CONFIG_BOOL_KEYS
        if not async_call:
            allowed.discard("background_delay")
        extra = {key for key in params if CONFIG_PATTERN_KEYS.match(key)}
        # JSONSchema reports every bad property at once, unknown ones included.
        errors = _param_errors(params, allowed | extra)
        update = {key: value for key, value in params.items() if key not in CONFIG_META}
        for key, value in update.items():
            if key in errors:
                continue
            try:
                if key in CONFIG_INT_KEYS:
                    _int(key, value, CONFIG_INT_KEYS[key])
                elif key in CONFIG_BOOL_KEYS:
                    update[key] = "1" if _bool(key, value) else "0"
                elif key == "memory":
                    if not re.fullmatch(r"(current=)?\d+", value) or _memory_mib(value) < 16:
                        raise param_error({key: "invalid format - value must be at least 16\n"})
                elif key == "name":
                    if DNS_NAME_RE.match(value) is None:
                        raise param_error(
                            {key: "invalid format - value does not look like a valid DNS name\n"}
                        )
                elif key == "agent":
                    first = value.split(",")[0].removeprefix("enabled=")
                    _bool(key, first)
                elif key == "sshkeys":
                    if URLENCODED_RE.match(value) is None:
                        raise param_error(
                            {key: f"invalid format - invalid urlencoded string: {value}\n"}
                        )
                elif key == "nameserver":
                    for address in re.split(r"[,;\s]+", value.strip()):
                        ipaddress.ip_address(address)
                elif key.startswith("ipconfig"):
                    _validate_ipconfig(key, value)
            except PveError as error:
                errors.update(error.errors or {})
            except ValueError:
                errors[key] = "invalid format - value does not look like a valid address list\n"
        if "background_delay" in params:
            try:
                _int("background_delay", params["background_delay"], 1, 30)
            except PveError as error:
                errors.update(error.errors or {})
        if "skiplock" in params:
            errors["skiplock"] = "Only root may use this option."
        if errors:
            raise param_error(errors)
        # Checked before the worker forks: a well-formed but wrong key list is a plain 500.
        if "sshkeys" in update:
            _validate_ssh_keys(urllib.parse.unquote(update["sshkeys"]))
        return update

    def _apply_config(self, vm: FakeVm, params: dict[str, str], update: dict[str, str]) -> None:
        digest = params.get("digest")
        if digest and digest != self._digest(vm):
            raise die("detected modified configuration - file changed by other user? Try again.")
        for key in re.split(r"[,;\s]+", params.get("delete", "").strip()):
            if key:
                vm.config.pop(key, None)
                if key in vm.disks:
                    del vm.disks[key]
        for key, value in update.items():
            if key == "cipassword":
                vm.cipassword_plain = value
                salt = hashlib.sha256(f"{vm.vmid}".encode()).hexdigest()[:16]
                value = f"$5${salt}${hashlib.sha256((salt + value).encode()).hexdigest()}"
            vm.config[key] = value
        vm.name = vm.config.get("name", f"VM {vm.vmid}")

    # ---------------------------------------------------------------- resize

    def _put_resize(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"disk", "size", "digest", "skiplock"}, required=["disk", "size"])
        drive_names = [f"ide{i}" for i in range(4)] + [f"sata{i}" for i in range(6)]
        drive_names += [f"scsi{i}" for i in range(31)] + [f"virtio{i}" for i in range(16)]
        drive_names += ["efidisk0", "tpmstate0"]
        disk = _enum("disk", params["disk"], drive_names)
        size = params["size"]
        if re.fullmatch(r"\+?\d+(\.\d+)?[KMGT]?", size) is None:
            raise param_error({"size": "value does not match the regex pattern"})
        if "skiplock" in params:
            raise param_error({"skiplock": "Only root may use this option."})
        node, vmid = groups["node"], int(groups["vmid"])
        digest = params.get("digest")

        # qemu-server runs every check inside the worker: the call always gets a UPID.
        def work() -> None:
            vm = self._vm(node, vmid)
            if digest and digest != self._digest(vm):
                raise TaskFailed("checksum mismatch (file change by other user?)")
            self._check_lock(vm)
            if disk not in vm.config:
                raise TaskFailed(f"disk '{disk}' does not exist")
            if "media=cdrom" in vm.config[disk]:
                raise TaskFailed("you can't resize a cdrom")
            current = vm.disks.get(disk, 0)
            match = SIZE_RE.match(size)
            assert match is not None
            grow, number, unit = match.groups()
            new = float(number) * UNITS[unit or ""]
            new_size = int(new + current if grow else new)
            if new_size < current:
                raise TaskFailed("shrinking disks is not supported")
            if new_size == current:
                return
            vm.disks[disk] = new_size
            vm.config[disk] = _with_size(vm.config[disk], new_size)

        return self._task(node, "resize", str(vmid), work)

    # ---------------------------------------------------------------- power

    def _get_status_current(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, set())
        vm = self._vm(groups["node"], int(groups["vmid"]))
        status = self._vm_entry(vm)
        status.update(qmpstatus=vm.status, ha={"managed": 0})
        if self._agent_enabled(vm):
            status["agent"] = 1
        if vm.status == "running":
            status["running-machine"] = "pc-i440fx-8.1+pve0"
            status["running-qemu"] = "8.1.5"
        if vm.template:
            status["template"] = 1
        return status

    def _post_power(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        node, vmid, action = groups["node"], int(groups["vmid"]), groups["action"]
        allowed = {
            "start": {"skiplock", "timeout", "machine"},
            "stop": {"skiplock", "timeout", "keepActive", "overrule-shutdown"},
            "shutdown": {"skiplock", "timeout", "forceStop", "keepActive"},
            "reboot": {"timeout"},
        }[action]
        _check_params(params, allowed)
        if "timeout" in params:
            _int("timeout", params["timeout"], 0)
        for root_only in ("skiplock", "keepActive"):
            if root_only in params and _bool(root_only, params[root_only]):
                raise param_error({root_only: "Only root may use this option."})
        if action == "reboot":
            vm = self._vm(node, vmid)
            if vm.status != "running":
                raise die(f"VM {vmid} not running")

        # start/stop/shutdown fork before loading the config: a missing or locked VM fails
        # the task, not the call.
        def work() -> None:
            vm = self._vm(node, vmid)
            self._check_lock(vm)
            if action == "start":
                if vm.template:
                    raise TaskFailed("you can't start a vm if it's a template")
                if vm.status == "running":
                    raise TaskFailed(f"VM {vmid} already running")
                vm.status = "running"
                vm.started_at = time.time()
            elif action in ("stop", "shutdown"):
                vm.status = "stopped"
                vm.started_at = None
            else:
                if vm.status != "running":
                    raise TaskFailed(f"VM {vmid} not running")
                vm.started_at = time.time()

        log = ["generating cloud-init ISO"] if action == "start" else []
        task_type = {
            "start": "qmstart",
            "stop": "qmstop",
            "shutdown": "qmshutdown",
            "reboot": "qmreboot",
        }[action]
        return self._task(node, task_type, str(vmid), work, log=log)

    def _get_agent_interfaces(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, set())
        vmid = int(groups["vmid"])
        vm = self._vm(groups["node"], vmid)
        if not self._agent_enabled(vm):
            raise die("No QEMU guest agent configured")
        if vm.status != "running":
            raise die(f"VM {vmid} is not running")
        waited = vm.started_at is not None and (
            time.time() - vm.started_at >= self.agent_delay_seconds
        )
        if not (self.agent_available and vm.agent_available and waited):
            raise die("QEMU guest agent is not running")
        mac = vm.config.get("net0", "").split(",")[0].partition("=")[2] or _random_mac(vmid)
        address = vm.address or self.vm_address
        stats = {
            "rx-bytes": 18244,
            "rx-dropped": 0,
            "rx-errs": 0,
            "rx-packets": 211,
            "tx-bytes": 20311,
            "tx-dropped": 0,
            "tx-errs": 0,
            "tx-packets": 198,
        }
        return {
            "result": [
                {
                    "name": "lo",
                    "hardware-address": "00:00:00:00:00:00",
                    "ip-addresses": [
                        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
                    ],
                    "statistics": dict(stats),
                },
                {
                    "name": "eth0",
                    "hardware-address": mac.lower(),
                    "ip-addresses": [
                        {"ip-address": address, "ip-address-type": "ipv4", "prefix": 24},
                        {
                            "ip-address": _link_local(mac),
                            "ip-address-type": "ipv6",
                            "prefix": 64,
                        },
                    ],
                    "statistics": dict(stats),
                },
            ]
        }

    def _get_rrddata(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"timeframe", "cf"}, required=["timeframe"])
        timeframe = _enum("timeframe", params["timeframe"], list(RRD_STEPS))
        cf = _enum("cf", params.get("cf", "AVERAGE"), ["AVERAGE", "MAX"])
        vm = self._vm(groups["node"], int(groups["vmid"]))
        step = RRD_STEPS[timeframe]
        last = int(time.time()) // step * step
        factor = 1.3 if cf == "MAX" else 1.0
        points = []
        for index in range(RRD_ROWS):
            at = last - (RRD_ROWS - 1 - index) * step
            wave = (math.sin(at / step / 5 + vm.vmid) + 1) / 2  # deterministic in (vmid, time)
            points.append(
                {
                    "time": at,
                    "cpu": round((0.02 + 0.1 * wave) * factor, 6),
                    "maxcpu": vm.cpus,
                    "mem": int(vm.maxmem * (0.3 + 0.2 * wave) * factor),
                    "maxmem": vm.maxmem,
                    "disk": 0,
                    "maxdisk": vm.maxdisk,
                    "netin": round(1200 * wave * factor, 3),
                    "netout": round(800 * wave * factor, 3),
                    "diskread": round(4096 * wave * factor, 3),
                    "diskwrite": round(16384 * wave * factor, 3),
                }
            )
        return points

    # ---------------------------------------------------------------- destroy

    def _delete_vm(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"purge", "destroy-unreferenced-disks", "skiplock"})
        for key in ("purge", "destroy-unreferenced-disks"):
            if key in params:
                _bool(key, params[key])
        if "skiplock" in params:
            raise param_error({"skiplock": "Only root may use this option."})
        node, vmid = groups["node"], int(groups["vmid"])
        vm = self._vm(node, vmid)
        self._check_lock(vm)
        if vm.status == "running":
            raise die(f"VM {vmid} is running - destroy failed")

        def work() -> None:
            current = self._vm(node, vmid)
            self._check_lock(current)
            if current.status == "running":
                raise TaskFailed(f"VM {vmid} is running - destroy failed")
            del self.vms[vmid]

        log = [f'  Logical volume "vm-{vmid}-disk-0" successfully removed.']
        return self._task(node, "qmdestroy", str(vmid), work, log=log)

    # ---------------------------------------------------------------- tasks API

    def _task_entry(self, task: FakeTask) -> dict[str, Any]:
        user, _, tokenid = task.user.partition("!")
        entry: dict[str, Any] = {
            "upid": task.upid,
            "node": task.node,
            "pid": task.pid,
            "pstart": task.pstart,
            "starttime": task.starttime,
            "type": task.type,
            "id": task.id,
            "user": user,
        }
        if tokenid:
            entry["tokenid"] = tokenid
        return entry

    def _get_tasks(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        allowed = {
            "start",
            "limit",
            "userfilter",
            "typefilter",
            "vmid",
            "errors",
            "source",
            "since",
            "until",
            "statusfilter",
        }
        _check_params(params, allowed)
        start = _int("start", params.get("start", "0"), 0)
        limit = _int("limit", params.get("limit", "50"), 0)
        tasks = [task for task in self.tasks.values() if task.node == groups["node"]]
        if "typefilter" in params:
            tasks = [task for task in tasks if task.type == params["typefilter"]]
        if "vmid" in params:
            tasks = [task for task in tasks if task.id == params["vmid"]]
        tasks.sort(key=lambda task: task.starttime, reverse=True)
        result = []
        for task in tasks[start : start + limit]:
            entry = self._task_entry(task)
            if task.status == "stopped":
                entry["status"] = task.exitstatus
                entry["endtime"] = task.endtime
            result.append(entry)
        return result, {"total": len(tasks)}

    def _get_task_status(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, set())
        task = self._task_for(groups["node"], groups["upid"])
        entry = self._task_entry(task)
        entry["status"] = task.status
        if task.status == "stopped":
            entry["exitstatus"] = task.exitstatus
        return entry

    def _get_task_log(self, groups: dict[str, str], params: dict[str, str]) -> Any:
        _check_params(params, {"start", "limit", "download"})
        task = self._task_for(groups["node"], groups["upid"])
        start = _int("start", params.get("start", "0"), 0)
        limit = _int("limit", params.get("limit", "50"), 0)
        lines = [{"n": index + 1, "t": text} for index, text in enumerate(task.log)]
        if not lines:
            return [{"n": 1, "t": "no content"}], {"total": 1}
        return lines[start : start + limit], {"total": len(lines)}
