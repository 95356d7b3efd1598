"""A third-party plugin, pip-installed from a package made here, is listed and used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import DIGI

PLUGIN = '''
"""digi-example: a third-party plugin, as an outside author would write it."""
import click
from digi_core import hookimpl
from digi_core.errors import NotBuiltYet
from digi_core.providers import ComputeProvider, HostStatus


class ExampleCompute(ComputeProvider):
    name = "example"

    async def host_for_service(self, service, log):
        raise NotBuiltYet(self.name, "host_for_service")

    async def release_service(self, service):
        raise NotBuiltYet(self.name, "release_service")

    async def hosts(self):
        box = HostStatus(id="ex-1", provider=self.name, name="example box", status="ready", cpus=64)
        return [box]

    async def host_stats(self, host_id, timeframe):
        return []


@hookimpl
def register_compute(register):
    register(ExampleCompute())


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("who")
    def hello(who):
        """Say hello (added by digi-example)."""
        click.echo(f"hello {who} from digi-example")
'''


def test_third_party_plugin_is_listed_and_used(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    source = tmp_path / "digi-example"
    (source / "digi_example").mkdir(parents=True)
    (source / "digi_example" / "__init__.py").write_text(PLUGIN)
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=70"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "digi-example"
            version = "1.2.3"

            [project.entry-points."digi.plugins"]
            example = "digi_example"

            [tool.setuptools]
            packages = ["digi_example"]
            """
        )
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    env = {**subprocess_env, "PYTHONPATH": str(target), "DIGI_DATA_DIR": str(tmp_path / "data")}

    listed = subprocess.run(
        [DIGI, "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    plugins = {plugin["name"]: plugin for plugin in json.loads(listed.stdout)}
    assert plugins["example"]["version"] == "1.2.3"
    assert plugins["example"]["providers"] == {"ComputeProvider": ["example"]}
    assert plugins["example"]["hooks"] == ["register_commands", "register_compute"]
    assert {"local", "proxmox", "caddy", "cloudflare", "stripe", "railpack"} <= set(plugins)

    hosts = subprocess.run(
        [DIGI, "hosts", "--json"],
        env={**env, "DIGI_COMPUTE": "example"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        json.loads(hosts.stdout)[0] | {"name": "example box", "cpus": 64}
        == json.loads(hosts.stdout)[0]
    )
    assert json.loads(hosts.stdout)[0]["id"] == "ex-1"

    hello = subprocess.run(
        [DIGI, "hello", "world"], env=env, capture_output=True, text=True, check=True
    )
    assert hello.stdout == "hello world from digi-example\n"

    only = subprocess.run(
        [DIGI, "plugins", "--json"],
        env={**env, "DIGI_LOAD_PLUGINS": "example"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert [plugin["name"] for plugin in json.loads(only.stdout)] == ["example"]

    # Without it on the path, nothing of it remains.
    plain = subprocess.run(
        [DIGI, "plugins", "--json"], env=subprocess_env, capture_output=True, text=True, check=True
    )
    assert "example" not in {plugin["name"] for plugin in json.loads(plain.stdout)}
