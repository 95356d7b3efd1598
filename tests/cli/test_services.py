"""Services, env vars and domains through the CLI: JSON outputs parsed, tables readable."""

from __future__ import annotations

import asyncio

from digi_core.models import Plan
from tests.cli.conftest import Cli
from tests.cli.test_account import one_line_error
from tests.core.deploys.conftest import Platform


async def test_create_list_info_and_delete_a_service(owner_cli: Cli) -> None:
    created = (
        await owner_cli(
            "services",
            "create",
            "--name",
            "shop",
            "--image",
            "nginx:1.27",
            "--port",
            "80",
            "--json",
        )
    ).json()
    assert created["name"] == "shop" and created["status"] == "CREATED"
    assert [(c["name"], c["type"]) for c in created["components"]] == [("web", "DOCKER")]

    # Commands that only read run side by side: each is a process of its own.
    listed, table, info, info_table, no_logs, wrong = await asyncio.gather(
        owner_cli("services", "list", "--json"),
        owner_cli("services", "list"),
        owner_cli("services", "info", created["id"], "--json"),
        owner_cli("services", "info", created["id"]),
        owner_cli("logs", created["id"], check=False),
        owner_cli("services", "delete", created["id"], input="shoe\n", check=False),
    )
    assert [item["id"] for item in listed.json()] == [created["id"]]
    assert set(listed.json()[0]) == {
        "id", "name", "slug", "status", "url", "createdAt", "components",
    }  # fmt: skip
    assert "shop" in table.stdout and created["id"] in table.stdout
    [web] = info.json()["components"]
    assert (web["image"], web["port"], info.json()["deployments"]) == ("nginx:1.27", 80, [])
    assert "Not deployed yet." in info_table.stdout
    assert no_logs.returncode == 4 and "web has no container" in one_line_error(no_logs.stderr)
    assert wrong.returncode == 2 and "nothing was deleted" in wrong.stderr
    deleted = await owner_cli("services", "delete", created["id"], input="shop\n")
    assert "Deleted shop. Removed:" in deleted.stdout
    assert (await owner_cli("services", "list", "--json")).json() == []

    missing = await owner_cli("services", "info", created["id"], check=False)
    assert missing.returncode == 4
    assert one_line_error(missing.stderr).startswith("error [NOT_FOUND]:")


async def test_create_without_a_terminal_needs_its_flags(owner_cli: Cli) -> None:
    result = await owner_cli("services", "create", "--image", "nginx", check=False)
    assert result.returncode == 2 and "--name is needed" in result.stderr
    result = await owner_cli("services", "create", "--name", "x", "--port", "80", check=False)
    assert result.returncode == 2
    assert "needs an image" in one_line_error(result.stderr)


async def test_env_set_list_masked_and_revealed_then_unset(owner_cli: Cli) -> None:
    created = (
        await owner_cli("services", "create", "--name", "envy", "--image", "nginx", "--json")
    ).json()
    service_id = created["id"]
    dotenv = owner_cli.cwd / ".env"
    dotenv.write_text('# comment\nexport GREETING="hello world"\nDEBUG=0\n\n')
    await owner_cli("env", "set", service_id, "DEBUG=1", "--from-file", str(dotenv))
    await owner_cli("env", "set", service_id, "PORT_NAME=http", "--component", "web")

    masked, table, revealed, revealed_table = await asyncio.gather(
        owner_cli("env", "list", service_id, "--json"),
        owner_cli("env", "list", service_id),
        owner_cli("env", "list", service_id, "--reveal", "--json"),
        owner_cli("env", "list", service_id, "--reveal"),
    )
    assert masked.json() == [
        {"key": "DEBUG", "value": None, "component": None},
        {"key": "GREETING", "value": None, "component": None},
        {"key": "PORT_NAME", "value": None, "component": "web"},
    ]
    assert "********" in table.stdout and "hello world" not in table.stdout
    assert {item["key"]: item["value"] for item in revealed.json()} == {
        "DEBUG": "1",
        "GREETING": "hello world",
        "PORT_NAME": "http",
    }
    assert "hello world" in revealed_table.stdout

    unset = await owner_cli("env", "unset", service_id, "DEBUG", "GREETING")
    assert "Deleted 2 variable(s)." in unset.stdout
    left = (await owner_cli("env", "list", service_id, "--json")).json()
    assert [item["key"] for item in left] == ["PORT_NAME"]

    bad = await owner_cli("env", "set", service_id, "NOEQUALS", check=False)
    assert bad.returncode == 2 and "is not KEY=VALUE" in bad.stderr


async def test_domains_list_and_add(owner_cli: Cli, platform: Platform) -> None:
    listed = (await owner_cli("domains", "list", "--json")).json()
    for domain in listed:
        assert set(domain) == {
            "id",
            "name",
            "kind",
            "isDefault",
            "verified",
            "verifiedAt",
            "componentId",
            "verificationRecord",
        }
    created = (
        await owner_cli("services", "create", "--name", "dom", "--image", "nginx", "--json")
    ).json()
    refused = await owner_cli("domains", "add", created["id"], "shop.example.com", check=False)
    assert refused.returncode == 5 and "PLAN_LIMIT" in one_line_error(refused.stderr)

    _, pro_token = await platform.user(plan=Plan.PRO)
    pro_cli = owner_cli.with_env(DIGI_TOKEN=pro_token)
    service = (
        await pro_cli("services", "create", "--name", "pro", "--image", "nginx", "--json")
    ).json()
    added = await pro_cli("domains", "add", service["id"], "pro.example.com")
    assert "_digi-verify.pro.example.com TXT digi-verify=" in added.stdout
    [custom] = [
        item
        for item in (await pro_cli("domains", "list", "--json")).json()
        if item["kind"] == "CUSTOM"
    ]
    assert (custom["name"], custom["verified"]) == ("pro.example.com", False)
    assert custom["componentId"] == service["components"][0]["id"]
