"""The console driven with Pilot against a real, seeded Digi API: navigation, filters, actions
through their modal, live updates, logs of a real container, refusal and reconnecting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pluggy
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Static

from digi_core import hookimpl, hookspecs
from digi_core.deploys.shared import publish
from digi_core.models import DeploymentStatus, Plan, User
from digi_core.server.keys import EVENT_BUS
from digi_tui.app import REFUSED_EXIT_CODE, DigiConsole
from digi_tui.plugin_screens import console_screens
from digi_tui.screens.confirm import ConfirmModal
from digi_tui.screens.deployments import DeploymentsScreen
from digi_tui.screens.logs import LogsScreen
from digi_tui.screens.overview import OverviewScreen
from digi_tui.screens.services import ServicesScreen
from digi_tui.screens.users import UsersScreen
from digi_tui.widgets.banner import ConnectionBanner
from digi_tui.widgets.progress import ActionStatus
from tests.conftest import DIGI
from tests.core.deploys.conftest import free_port
from tests.tui.conftest import ClosableProxy, World, shown, until

Pilot = Any  # textual.pilot.Pilot[None]


def rows(pilot: Pilot, table_id: str) -> list[list[str]]:
    table = pilot.app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def text_of(pilot: Pilot, selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).content)


async def test_navigation_by_keys_and_palette(world: World) -> None:
    async with world.console().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: text_of(pilot, "#card-users") == "5")
        assert text_of(pilot, "#card-services") == "3"
        assert text_of(pilot, "#card-failedDeployments") == "1"
        assert "API ok" in text_of(pilot, "#health")
        await pilot.press("3")
        assert isinstance(pilot.app.screen, ServicesScreen)
        await until(pilot, lambda: len(rows(pilot, "services")) == 3)
        assert [row[:3] for row in rows(pilot, "services")] == [
            ["wiki", "bob@example.com", "deploying"],
            ["blog", "bob@example.com", "failed"],
            ["shop", "alice@example.com", "running"],
        ]
        await pilot.press("ctrl+p")
        await pilot.press(*"Go to Users")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, UsersScreen))
        await until(pilot, lambda: len(rows(pilot, "users")) == 5)
        await pilot.press("2")
        await until(pilot, lambda: len(rows(pilot, "hosts")) == 1)
        assert rows(pilot, "hosts")[0][1:3] == ["local", "ready"]
        await pilot.press("7")
        await until(pilot, lambda: bool(rows(pilot, "audit")))
        assert "createService" in {row[2] for row in rows(pilot, "audit")}
        await pilot.press("1")
        assert "Users" in shown(pilot)


async def test_services_filter_by_owner_name_and_status(world: World) -> None:
    async with world.console().run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: len(rows(pilot, "services")) == 3)
        await pilot.press("slash", *"owner:bob")
        await until(pilot, lambda: [r[0] for r in rows(pilot, "services")] == ["wiki", "blog"])
        await pilot.press(*" failed")
        await until(pilot, lambda: [r[0] for r in rows(pilot, "services")] == ["blog"])
        await pilot.press("enter")  # back to the table; the detail pane shows the service
        await until(pilot, lambda: "health check failed" in text_of(pilot, "#service-detail"))
        detail = text_of(pilot, "#service-detail")
        assert "web (digi-test-web:latest)" in detail
        assert "http://blog-web." in detail
        assert "Env: none (values hidden)" in detail


async def test_deployments_filter_by_status_and_owner(world: World) -> None:
    async with world.console().run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: len(rows(pilot, "deployments")) == 3)
        await pilot.press("slash", *"status:failed")
        await until(pilot, lambda: [r[1] for r in rows(pilot, "deployments")] == ["blog"])
        await pilot.press(*["backspace"] * len("status:failed"), *"alice")
        await until(pilot, lambda: [r[1] for r in rows(pilot, "deployments")] == ["shop"])


async def test_suspend_unsuspend_and_change_plans_through_the_modal(world: World) -> None:
    dave = int(world.user_ids["dave@example.com"])
    async with world.console().run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "slash", *"dave", "enter")
        await until(pilot, lambda: [r[0] for r in rows(pilot, "users")] == ["dave@example.com"])
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        await pilot.press("n")  # a "no" does nothing
        await pilot.pause(0.3)
        assert (await User.get(id=dave)).suspended_at is None
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        assert "Suspend dave@example.com?" in shown(pilot)
        await pilot.press("y")
        await until(pilot, lambda: rows(pilot, "users")[0][4] == "suspended")
        assert (await User.get(id=dave)).suspended_at is not None
        assert "Suspended dave@example.com" in str(pilot.app.screen.query_one(ActionStatus).content)
        await pilot.press("u", "y")
        await until(pilot, lambda: rows(pilot, "users")[0][4] == "active")
        assert (await User.get(id=dave)).suspended_at is None

        await pilot.press("p")  # the plan: free to pro, then back
        await until(pilot, lambda: "Move dave@example.com to the pro plan?" in shown(pilot))
        await pilot.press("y")
        await until(pilot, lambda: rows(pilot, "users")[0][3] == "pro")
        assert (await User.get(id=dave)).plan is Plan.PRO
        await pilot.press("p", "y")
        await until(pilot, lambda: rows(pilot, "users")[0][3] == "free")


async def test_a_refused_action_shows_the_apis_message(world: World) -> None:
    async with world.console().run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "slash", *"admin@", "enter")
        await until(pilot, lambda: [r[0] for r in rows(pilot, "users")] == ["admin@digi.test"])
        await pilot.press("s", "y")
        status = pilot.app.screen.query_one(ActionStatus)
        await until(pilot, lambda: status.has_class("-failed"))
        assert "admins cannot do this to their own account" in str(status.content)


async def test_a_deployment_status_change_appears_without_a_key_press(world: World) -> None:
    async def move(status: DeploymentStatus, message: str) -> None:
        await move_wiki(world, status, message)

    async with world.console().run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        screen = pilot.app.screen
        assert isinstance(screen, DeploymentsScreen)
        await until(pilot, lambda: len(rows(pilot, "deployments")) == 3)
        assert rows(pilot, "deployments")[0][1:5] == [
            "wiki",
            "bob@example.com",
            "web",
            "building",
        ]
        await until(pilot, lambda: screen.live)  # subscribed: a change from now on is pushed
        try:
            started = time.monotonic()
            await move(DeploymentStatus.RUNNING, "now serving")
            await until(
                pilot,
                lambda: rows(pilot, "deployments")[0][4:] == ["running", "now serving"],
                within=10,
            )
            # Pushed, not polled: the screen does not ask for the list again.
            assert time.monotonic() - started < 1.5
        finally:
            await move(DeploymentStatus.BUILDING, "building the image")
        await until(pilot, lambda: rows(pilot, "deployments")[0][4] == "building")
        await pilot.press("enter")  # the log: what the API kept, then the job live
        log = pilot.app.screen.query_one("#build-log", RichLog)
        await until(pilot, lambda: "building the image" in _lines(log))
        kept = _lines(log)
        assert kept.index("── running ──") < kept.index("now serving") < kept.index("── building")
        try:
            await move(DeploymentStatus.BUILDING, "a step while the pane is open")
            await until(pilot, lambda: "a step while the pane is open" in _lines(log))
        finally:
            await move(DeploymentStatus.BUILDING, "building the image")
        await until(pilot, lambda: _lines(log).count("building the image") == 2)
        assert _lines(log).count("now serving") == 1  # kept or live, never both

        # A finished deployment: its log, and why it failed.
        await pilot.press("slash", *"status:failed", "enter", "enter")
        await until(
            pilot, lambda: "Log of #" in str(log.border_title) and "blog" in str(log.border_title)
        )
        await until(pilot, lambda: "no log was kept for this deployment" in _lines(log))
        assert "failed: GET /health answered 502" in _lines(log)


async def move_wiki(world: World, status: DeploymentStatus, message: str) -> None:
    """What a deploy worker does to the seeded wiki deployment: write the row, publish it."""
    wiki = world.deployments["wiki"]
    wiki.status, wiki.message = status, message
    await wiki.save()
    await publish(world.platform.client.app[EVENT_BUS], wiki, "web")


def _lines(log: RichLog) -> str:
    return "\n".join(line.text for line in log.lines)


async def test_a_containers_log_line_appears(world: World) -> None:
    platform, alice = world.platform, world.tokens["alice@example.com"]
    image = "digi-test-web:latest"
    created = await platform.service(
        alice, "logger", f'[{{name: "web", type: DOCKER, image: "{image}"}}]'
    )
    try:
        job = await platform.deploy(alice, created["id"])
        finished = await platform.wait_job(job["jobId"], within=90)
        assert finished[0].status is DeploymentStatus.RUNNING, finished[0].error
        async with world.console().run_test(size=(80, 24)) as pilot:
            await pilot.press("3", "slash", *"logger", "enter")
            await until(pilot, lambda: [r[0] for r in rows(pilot, "services")] == ["logger"])
            await until(pilot, lambda: "logger" in text_of(pilot, "#service-detail"))
            await pilot.press("l")
            await until(pilot, lambda: isinstance(pilot.app.screen, LogsScreen))
            screen = pilot.app.screen
            assert isinstance(screen, LogsScreen)
            await until(pilot, lambda: "serving" in screen.lines, within=30)
            assert "serving" in _lines(screen.query_one("#log", RichLog))
            assert "Logs of web of logger (live, following)" in text_of(pilot, "#log-target")
            await pilot.press("p")
            assert "paused" in text_of(pilot, "#log-target")
            await pilot.press("slash", *"nothing-like-this")
            await until(pilot, lambda: not _lines(screen.query_one("#log", RichLog)).strip())
    finally:
        await platform.gql(
            'mutation($id: ID!) { deleteService(id: $id, confirm: "logger") { removed } }',
            {"id": created["id"]},
            token=alice,
        )


async def test_a_non_admin_token_is_refused(world: World) -> None:
    app = world.console(token=world.tokens["carol@example.com"])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == REFUSED_EXIT_CODE
    assert "carol@example.com (user)" in app.refusal
    assert "the console is for the platform's admins" in app.refusal


async def test_digi_console_refuses_a_non_admin_token_with_a_clear_message(
    world: World, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "DIGI_TOKEN": world.tokens["carol@example.com"]}
    process = await asyncio.create_subprocess_exec(
        DIGI,
        "console",
        "--api",
        world.api_url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == REFUSED_EXIT_CODE
    message = " ".join(stderr.decode().split())
    assert "error [FORBIDDEN]:" in message
    assert "the console is for the platform's admins" in message


async def test_a_dropped_connection_shows_a_banner_and_reconnects(
    world: World, proxy: ClosableProxy
) -> None:
    app = world.console(api_url=f"http://127.0.0.1:{proxy.port}")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.ready.is_set())
        await pilot.press("4")
        screen = pilot.app.screen
        assert isinstance(screen, DeploymentsScreen)
        await until(pilot, lambda: screen.live)
        banner = screen.query_one(ConnectionBanner)
        assert not banner.display or not banner.has_class("-lost")
        await proxy.close()
        await until(pilot, lambda: banner.has_class("-lost"), within=10)
        assert "Connection lost" in shown(pilot)
        assert "Reconnecting" in str(banner.content)
        await until(pilot, lambda: not screen.live)
        await proxy.open()
        await until(pilot, lambda: not banner.has_class("-lost"), within=10)
        assert "Connection lost" not in shown(pilot)
        # The live list subscribed again by itself.
        await until(pilot, lambda: screen.live, within=10)
        try:
            await move_wiki(world, DeploymentStatus.DEPLOYING, "after the reconnect")
            await until(pilot, lambda: rows(pilot, "deployments")[0][4] == "deploying")
        finally:
            await move_wiki(world, DeploymentStatus.BUILDING, "building the image")


class HelloScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello from a plugin", id="hello")


class HelloPlugin:
    @hookimpl
    def register_console_screens(self, register: Callable[[str, Any], None]) -> None:
        register("Hello", HelloScreen)


async def test_plugins_add_screens_the_console_lists(world: World) -> None:
    manager = pluggy.PluginManager("digi")
    manager.add_hookspecs(hookspecs)
    manager.register(HelloPlugin(), name="hello")
    screens = console_screens(manager)
    assert screens == {"Hello": HelloScreen}
    app = DigiConsole(world.api_url, world.admin_token, plugin_screens=screens)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "Hello" in text_of(pilot, "#plugin-screens"))
        await pilot.press("ctrl+p", *"Plugin: Hello", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelloScreen))
        await pilot.press("escape")  # back to where it was opened
        await until(pilot, lambda: isinstance(pilot.app.screen, OverviewScreen))


def test_digi_core_never_imports_textual(tmp_path: Path) -> None:
    """The core, its CLI and a server's plugin manager (which loads digi_tui) stay Textual-free."""
    program = (
        "import sys\n"
        "import digi_core.cli, digi_core.cli.operator, digi_core.cli.user\n"
        "from digi_core.plugins import make_plugin_manager\n"
        "from digi_core.server.app import init_app\n"
        "import digi_core.api.schema\n"
        "manager = make_plugin_manager()\n"
        "assert manager.get_plugin('tui') is not None\n"
        "manager.hook.register_commands(cli=digi_core.cli.cli)\n"
        "assert 'console' in digi_core.cli.cli.commands\n"
        "ui = {'textual', 'textual_serve'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ui)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr


async def test_serve_offers_the_console_to_a_browser(
    world: World, subprocess_env: dict[str, str]
) -> None:
    port = free_port()
    env = {**subprocess_env, "DIGI_TOKEN": world.admin_token}
    process = await asyncio.create_subprocess_exec(
        DIGI,
        "console",
        "--serve",
        "--port",
        str(port),
        "--api",
        world.api_url,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as response:
                        page = await response.text()
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                    assert asyncio.get_running_loop().time() < deadline, "never served"
                    await asyncio.sleep(0.2)
        assert response.status == 200
        assert "Digi console" in page
        # Each browser tab's WebSocket runs a console of its own, signed in like this process.
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://127.0.0.1:{port}/ws?width=80&height=24") as websocket,
        ):
            screen = b""
            async with asyncio.timeout(30):
                while b"API ok" not in screen:
                    message = await websocket.receive()
                    if message.type in {aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT}:
                        data = message.data
                        screen += data if isinstance(data, bytes) else data.encode()
                    else:
                        raise AssertionError(f"the console's WebSocket ended: {message}")
    finally:
        process.terminate()
        await process.wait()
