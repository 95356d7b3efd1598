"""The operator CLI as a real subprocess: plugins, hosts on the real Docker engine, help."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import DIGI, REPO


def digi(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGI, *args], env=env, capture_output=True, text=True, timeout=60, check=check
    )


def test_plugins_lists_the_six_bundled(subprocess_env: dict[str, str]) -> None:
    listed = json.loads(digi("plugins", "--json", env=subprocess_env).stdout)
    assert [plugin["name"] for plugin in listed] == [
        "caddy",
        "cloudflare",
        "local",
        "proxmox",
        "railpack",
        "ssh",
        "stripe",
        "tui",
    ]
    assert all(plugin["version"] == "0.1.0" for plugin in listed)
    table = digi("plugins", env=subprocess_env).stdout
    assert "ComputeProvider: local" in table and "BillingProvider: stripe" in table


def test_load_plugins_with_an_unknown_name(subprocess_env: dict[str, str]) -> None:
    result = digi("plugins", env={**subprocess_env, "DIGI_LOAD_PLUGINS": "local,nope"}, check=False)
    assert result.returncode == 6
    assert "not installed: nope" in result.stderr and "Traceback" not in result.stderr


def test_hosts_asks_the_local_docker_engine(subprocess_env: dict[str, str]) -> None:
    [host] = json.loads(digi("hosts", "--json", env=subprocess_env).stdout)
    assert host["id"] == "local" and host["status"] == "ready"
    assert host["cpus"] >= 1 and host["memory_total_bytes"] > 0


def test_hosts_of_proxmox_without_nodes_lists_none(subprocess_env: dict[str, str]) -> None:
    result = digi("hosts", "--json", env={**subprocess_env, "DIGI_COMPUTE": "proxmox"})
    assert json.loads(result.stdout) == []


def test_unknown_compute_names_the_installed_ones(subprocess_env: dict[str, str]) -> None:
    result = digi("hosts", env={**subprocess_env, "DIGI_COMPUTE": "nomad"}, check=False)
    assert result.returncode == 6
    assert "installed: local, proxmox, ssh" in result.stderr


def test_version_and_help_with_examples(subprocess_env: dict[str, str]) -> None:
    assert digi("version", env=subprocess_env).stdout == "digi 0.1.0\n"
    assert digi("--version", env=subprocess_env).stdout.strip() == "digi, version 0.1.0"
    for command in ([], ["server"], ["plugins"], ["hosts"], ["db", "upgrade"], ["version"]):
        assert "Example:" in digi(*command, "--help", env=subprocess_env).stdout, command


def test_committed_schema_has_not_drifted(subprocess_env: dict[str, str]) -> None:
    printed = digi("schema", env=subprocess_env).stdout
    committed = (REPO / "schema.graphql").read_text()
    assert printed == committed, "the API changed: run `digi schema > schema.graphql` and commit"
