"""A real OpenSSH server for tests: /usr/sbin/sshd on a loopback port, keys in a directory.

It plays a host Digi reaches over SSH (a Proxmox VM, a bring-your-own server): Digi logs in
with its platform key and forwards this machine's Docker socket and a test Caddy's admin port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import asyncssh

SSHD = "/usr/sbin/sshd"


class Sshd:
    """``authorize(public_key_line)`` lets a key in; ``rotate_host_key()`` gives the server a
    new host key (as a reinstalled or impersonated host would have)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.user = os.environ.get("USER") or "root"
        self.authorized_keys = directory / "authorized_keys"
        self.host_key_file = directory / "ssh_host_ed25519_key"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> str:
        """The host key's public line, as a client sees it."""
        key = asyncssh.read_private_key(self.host_key_file)
        return key.export_public_key().decode().strip()

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as file:
            file.write(public_key_line + "\n")
        self.authorized_keys.chmod(0o600)

    def _write_host_key(self) -> None:
        self.host_key_file.unlink(missing_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_file.write_bytes(key.export_private_key())
        self.host_key_file.chmod(0o600)

    def _write_config(self) -> Path:
        config = self.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_file}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    # pytest's temporary directories are not root-only all the way up.
                    "StrictModes no",
                    "UsePAM no",
                    "AllowTcpForwarding yes",
                    "AllowStreamLocalForwarding yes",
                    "MaxSessions 100",
                    "MaxStartups 100",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        return config

    def _spawn(self) -> subprocess.Popen[bytes]:
        if not self.host_key_file.exists():
            self._write_host_key()
        self.authorized_keys.touch(mode=0o600)
        # sshd wants its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self._write_config()
        return subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "sshd.log").open("ab"),
        )

    async def start(self) -> None:
        self._process = self._spawn()
        for _ in range(100):
            if self._process.poll() is not None:
                log = (self.directory / "sshd.log").read_text()
                raise RuntimeError(f"sshd exited with {self._process.returncode}: {log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError("sshd did not listen within 5 s")

    async def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            await asyncio.to_thread(self._process.wait, 10)
        self._process = None

    def drop_connections(self) -> None:
        """End every session (its per-connection sshd), as a network cut or reboot would;
        the server keeps listening."""
        assert self._process is not None
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self._process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child.name), signal.SIGKILL)

    async def rotate_host_key(self) -> None:
        await self.stop()
        self._write_host_key()
        await self.start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
