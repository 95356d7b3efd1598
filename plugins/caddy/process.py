"""The Caddy that ``digi server`` runs on this machine: started, watched and restarted by Digi.

Caddy runs as ``caddy run --config <data_dir>/caddy/caddy.json --resume``. Caddy autosaves
every config it loads to ``$XDG_CONFIG_HOME/caddy/autosave.json``, and ``--resume`` loads that
file instead of ``--config`` when it exists (2.6.2), so a Caddy that died comes back with the
routes it had. ``caddy.json`` (admin address and Digi's empty server) is only used the first
time, or when the autosave is unreadable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from digi_caddy.router import digi_server
from digi_core.errors import ConfigError, DigiError

if TYPE_CHECKING:
    from digi_core.config import Settings

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1)
RESTART_BACKOFF_SECONDS = (0.2, 5.0)  # first delay, longest delay
STABLE_AFTER_SECONDS = 10.0  # a Caddy that ran this long restarts after the first delay again
STDERR_LINES_KEPT = 20


class CaddyStartError(DigiError):
    """The Caddy that Digi runs could not be started."""

    code = "ROUTER_UNAVAILABLE"
    http_status = 503


def admin_listen_address(admin_url: str) -> str:
    """Caddy's ``admin.listen`` for ``admin_url``; only loopback, because the admin API can
    rewrite every route and has no authentication."""
    parts = urlsplit(admin_url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        port = parts.port
    except ValueError:
        loopback, port = False, None
    if parts.scheme != "http" or not loopback or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            [
                f"DIGI_CADDY_ADMIN_URL: the Caddy Digi runs must keep its admin API on this "
                f"machine: use http://127.0.0.1:PORT (or http://[::1]:PORT), or set "
                f"DIGI_CADDY_MANAGE=false to use a Caddy you run yourself (got {admin_url!r})"
            ]
        )
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ManagedCaddy:
    """One Caddy process on loopback, restarted when it dies; ``on_ready`` runs after each
    (re)start, once its admin API answers (the router puts Digi's server in place there)."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        on_ready: Callable[[], Awaitable[object]],
    ) -> None:
        self.binary = settings.caddy_bin
        self.admin_url = settings.caddy_admin_url.rstrip("/")
        self.admin_listen = admin_listen_address(self.admin_url)
        self.directory = settings.data_dir / "caddy"
        self.config_path = self.directory / "caddy.json"
        self.autosave_path = self.directory / "config" / "caddy" / "autosave.json"
        self.http_port = settings.http_port
        self.restarts = 0
        """How many times the supervisor brought Caddy back after it exited."""
        self.reused = False
        """True when a Caddy already answered at start: Digi uses it but does not run it."""
        self._session = session
        self._on_ready = on_ready
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the running Caddy that Digi started, else ``None``."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start Caddy and its supervisor, or adopt a Caddy that already answers."""
        if await self._answers():
            log.info(
                "a Caddy already answers at %s (left from an earlier run, or the operator's): "
                "using it instead of starting one; Digi will not restart it",
                self.admin_url,
            )
            self.reused = True
            await self._on_ready()
            return
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="caddy-supervisor")

    async def close(self) -> None:
        """Stop supervising, then stop Caddy: SIGTERM, SIGKILL after a few seconds."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._stop_process()

    async def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("Caddy (pid %s) ignored SIGTERM; killing it", process.pid)
                process.kill()
                await process.wait()
        await self._stop_stderr_reader()

    async def _spawn(self) -> None:
        """Run Caddy, wait for its admin API, then ``on_ready``; raise CaddyStartError if not."""
        self._prepare_files()
        await self._stop_stderr_reader()
        self._stderr_tail.clear()
        env = {
            **os.environ,
            # Caddy's storage (certificates, locks) and its autosave stay in Digi's data dir.
            "XDG_DATA_HOME": str(self.directory / "data"),
            "XDG_CONFIG_HOME": str(self.directory / "config"),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                "run",
                "--config",
                str(self.config_path),
                "--resume",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # Its own session: a Ctrl-C meant for Digi must not kill Caddy behind the
                # supervisor's back while Digi shuts down in order.
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as error:
            raise CaddyStartError(
                f"cannot run the Caddy binary {self.binary!r} ({error.strerror}): install "
                "Debian's caddy package (apt-get install caddy) or set DIGI_CADDY_BIN to its "
                "path, or set DIGI_CADDY_MANAGE=false to use a Caddy you run yourself."
            ) from None
        self._process = process
        assert process.stderr is not None
        self._stderr_reader = asyncio.create_task(self._read_stderr(process.stderr))
        await self._wait_until_answering(process)
        log.info("Caddy started (pid %s), admin API at %s", process.pid, self.admin_url)
        await self._on_ready()

    async def _wait_until_answering(self, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not await self._answers():
            if process.returncode is not None:
                await self._stop_stderr_reader()
                raise self._start_error(f"exited with code {process.returncode}")
            if time.monotonic() > deadline:
                process.kill()
                await process.wait()
                await self._stop_stderr_reader()
                raise self._start_error(
                    f"did not answer at {self.admin_url} within {START_TIMEOUT_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.05)

    def _start_error(self, what: str) -> CaddyStartError:
        tail = "\n  ".join(self._last_output(5)) or "(no output)"
        return CaddyStartError(
            f"Caddy ({self.binary}) {what}; is DIGI_HTTP_PORT {self.http_port} or the admin "
            f"address {self.admin_listen} already in use? Its last output:\n  {tail}"
        )

    async def _answers(self) -> bool:
        try:
            async with self._session.get(self.admin_url + "/config/", timeout=PROBE_TIMEOUT):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _supervise(self) -> None:
        """Wait for Caddy to exit; bring it back after a short, growing delay."""
        delay = RESTART_BACKOFF_SECONDS[0]
        started = time.monotonic()
        while True:
            process = self._process
            if process is not None:
                code = await process.wait()
                await self._stop_stderr_reader()
                if time.monotonic() - started > STABLE_AFTER_SECONDS:
                    delay = RESTART_BACKOFF_SECONDS[0]
                log.warning(
                    "Caddy (pid %s) exited with code %s; restarting it in %.1f s. Last output: %s",
                    process.pid,
                    code,
                    delay,
                    " | ".join(self._last_output(3)) or "(none)",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF_SECONDS[1])
            started = time.monotonic()
            try:
                await self._spawn()
            except DigiError as error:
                log.error("Caddy did not come back, trying again in %.1f s: %s", delay, error)
                await self._stop_process()
                continue
            self.restarts += 1
            log.warning("Caddy is back (pid %s), restart #%d", self.pid, self.restarts)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        """Keep Caddy's last lines for error messages; the pipe must be drained anyway."""
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail.append(text)
            log.debug("caddy: %s", text)

    def _last_output(self, count: int) -> list[str]:
        """Caddy's last lines, its warnings and errors first: the info lines rarely say why."""
        lines = list(self._stderr_tail)
        telling = [line for line in lines if not line.startswith('{"level":"info"')]
        return (telling or lines)[-count:]

    async def _stop_stderr_reader(self) -> None:
        reader, self._stderr_reader = self._stderr_reader, None
        if reader is None:
            return
        # The reader ends by itself at EOF once Caddy is gone; never wait long for it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 1)

    def _prepare_files(self) -> None:
        """Write ``caddy.json``; point a kept autosave at today's admin address."""
        self.autosave_path.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        config = {
            "admin": {"listen": self.admin_listen},
            "apps": {"http": {"servers": {"digi": digi_server(self.http_port)}}},
        }
        _write_json(self.config_path, config)
        if not self.autosave_path.exists():
            return
        try:
            saved = json.loads(self.autosave_path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            # A Caddy killed while writing it would never start again with --resume.
            broken = self.autosave_path.with_suffix(".broken")
            log.warning(
                "Caddy's autosave %s is unreadable (%s): moved to %s; starting from %s, "
                "routes come back with the next sync",
                self.autosave_path,
                error,
                broken,
                self.config_path,
            )
            self.autosave_path.replace(broken)
            return
        # DIGI_CADDY_ADMIN_URL may have changed since the autosave was written.
        admin = saved.get("admin")
        if not isinstance(admin, dict):
            admin = {}
        if admin.get("listen") != self.admin_listen:
            saved["admin"] = {**admin, "listen": self.admin_listen}
            _write_json(self.autosave_path, saved)


def _write_json(path: Path, value: object) -> None:
    """Write through a temporary file: Caddy must never read half a config."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.chmod(temporary, 0o600)
    temporary.replace(path)
