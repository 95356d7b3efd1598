"""The plugin manager: entry points, DIGI_LOAD_PLUGINS, the registry, documented hooks."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest

from digi_core import hookimpl, hookspecs
from digi_core.errors import NotBuiltYet, NotConfigured
from digi_core.plugins import Registry, make_plugin_manager
from digi_core.providers import (
    BillingProvider,
    Builder,
    ComputeProvider,
    DnsProvider,
    HostStatus,
    LogSink,
    StatsPoint,
)

BUNDLED = {
    "caddy": {"Router": ["caddy"]},
    "cloudflare": {"DnsProvider": ["cloudflare"]},
    "local": {"ComputeProvider": ["local"]},
    "proxmox": {"ComputeProvider": ["proxmox"]},
    "railpack": {"Builder": ["dockerfile", "railpack"]},
    "ssh": {"ComputeProvider": ["ssh"]},
    "stripe": {"BillingProvider": ["stripe"]},
}


def hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if getattr(getattr(hookspecs, name), "digi_spec", None)]


def test_every_hook_is_documented() -> None:
    """datasette's test_plugin_hooks_are_documented: a new hook needs its docs heading."""
    docs = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    headings = set(re.findall(r"^### `?(\w+)\(", docs, flags=re.M))
    assert set(hook_names()) <= headings, sorted(set(hook_names()) - headings)
    assert len(hook_names()) >= 8


def test_hooks_have_docstrings_and_no_defaults() -> None:
    import inspect

    for name in hook_names():
        function = getattr(hookspecs, name)
        assert function.__doc__, name
        parameters = inspect.signature(function).parameters.values()
        assert all(p.default is inspect.Parameter.empty for p in parameters), name


def test_bundled_plugins_load_through_entry_points() -> None:
    registry = Registry(make_plugin_manager())
    infos = {info.name: info for info in registry.plugins()}
    assert {name: info.providers for name, info in infos.items() if name in BUNDLED} == BUNDLED
    assert infos["local"].module == "digi_local"
    assert infos["local"].version


def test_load_plugins_limits_what_loads() -> None:
    registry = Registry(make_plugin_manager(["local", "caddy"]))
    assert sorted(info.name for info in registry.plugins()) == ["caddy", "local"]
    assert list(registry.providers(ComputeProvider)) == ["local"]
    expected = r"no ComputeProvider named 'proxmox'.*installed: local"
    with pytest.raises(NotConfigured, match=expected):
        registry.get(ComputeProvider, "proxmox")


def test_unknown_plugin_in_load_plugins_is_refused() -> None:
    with pytest.raises(NotConfigured, match="not installed: nosuch"):
        make_plugin_manager(["local", "nosuch"])


def test_each_app_gets_its_own_manager() -> None:
    first, second = make_plugin_manager(), make_plugin_manager()
    first.register(ExamplePlugin(), name="example")
    assert second.get_plugin("example") is None
    assert "example" in Registry(first).providers(ComputeProvider)
    assert "example" not in Registry(second).providers(ComputeProvider)


async def test_unbuilt_methods_raise_a_typed_error() -> None:
    registry = Registry(make_plugin_manager())
    dns = registry.get(DnsProvider, "cloudflare")
    with pytest.raises(NotBuiltYet) as caught:
        await dns.records()
    assert caught.value.code == "NOT_CONFIGURED"
    assert "cloudflare: records is not implemented yet" in caught.value.message
    for kind in (DnsProvider, Builder, BillingProvider):
        assert registry.providers(kind)


def test_registering_the_wrong_kind_is_refused() -> None:
    class Confused:
        @hookimpl
        def register_routers(self, register: Callable[[object], None]) -> None:
            register(ExampleCompute())

    manager = make_plugin_manager([])
    manager.register(Confused())
    with pytest.raises(TypeError, match="not a Router"):
        Registry(manager)


def test_two_providers_with_one_name_are_refused() -> None:
    manager = make_plugin_manager(["local"])

    class Impostor:
        @hookimpl
        def register_compute(self, register: Callable[[ComputeProvider], None]) -> None:
            compute = ExampleCompute()
            compute.name = "local"  # type: ignore[misc]
            register(compute)

    manager.register(Impostor())
    with pytest.raises(ValueError, match="named 'local', which another plugin already"):
        Registry(manager)


def test_hookspecs_validate_plugins() -> None:
    class Typo:
        @hookimpl
        def register_computes(self, register: object) -> None: ...

    manager = make_plugin_manager([])
    manager.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        manager.check_pending()


class ExampleCompute(ComputeProvider):
    name = "example"

    async def host_for_service(self, service: object, log: LogSink) -> object:  # type: ignore[override]
        raise NotBuiltYet(self.name, "host_for_service")

    async def release_service(self, service: object) -> None:  # type: ignore[override]
        raise NotBuiltYet(self.name, "release_service")

    async def hosts(self) -> list[HostStatus]:
        return [HostStatus(id="example-1", provider=self.name, name="example", status="ready")]

    async def host_stats(self, host_id: str, timeframe: str) -> list[StatsPoint]:
        return []


class ExamplePlugin:
    @hookimpl
    def register_compute(self, register: Callable[[ComputeProvider], None]) -> None:
        register(ExampleCompute())
