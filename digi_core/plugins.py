"""The plugin manager: loads plugins from the ``digi.plugins`` entry points, one per app."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, TypeVar

import pluggy

from digi_core import hookspecs
from digi_core.errors import NotConfigured
from digi_core.providers import (
    BillingProvider,
    Builder,
    ComputeProvider,
    DnsProvider,
    Provider,
    Router,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "digi.plugins"

# Registration hooks and the kind of provider each one takes.
PROVIDER_HOOKS: dict[str, type[Provider]] = {
    "register_compute": ComputeProvider,
    "register_routers": Router,
    "register_dns": DnsProvider,
    "register_builders": Builder,
    "register_billing": BillingProvider,
}

P = TypeVar("P", bound=Provider)


@dataclass
class PluginInfo:
    """One loaded plugin: where it came from and what it registered."""

    name: str
    version: str | None
    module: str
    hooks: list[str]
    providers: dict[str, list[str]] = field(default_factory=dict)


def make_plugin_manager(load: Iterable[str] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with every installed plugin loaded, or only those in ``load``.

    A fresh one per app instance keeps tests from leaking plugins into each other.
    """
    manager = pluggy.PluginManager("digi")
    manager.add_hookspecs(hookspecs)
    wanted = set(load) if load is not None else None
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and entry_point.name not in wanted:
            continue
        if manager.get_plugin(entry_point.name) is not None:
            continue  # two distributions claiming one name: the first wins
        plugin = entry_point.load()
        manager.register(plugin, name=entry_point.name)
    if wanted:
        missing = wanted - {name for name, _ in manager.list_name_plugin()}
        if missing:
            raise NotConfigured(
                "DIGI_LOAD_PLUGINS names plugins that are not installed: "
                + ", ".join(sorted(missing))
                + ". Install them or remove them from DIGI_LOAD_PLUGINS."
            )
    manager.check_pending()
    return manager


class Registry:
    """The providers the loaded plugins registered, by kind and name."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.by_kind: dict[type[Provider], dict[str, Provider]] = {
            kind: {} for kind in PROVIDER_HOOKS.values()
        }
        self.registered_by: dict[str, dict[str, list[str]]] = {}
        for hook_name, kind in PROVIDER_HOOKS.items():
            hook = getattr(manager.hook, hook_name)
            # One call per implementation, so each provider is attributed to its plugin.
            for implementation in reversed(hook.get_hookimpls()):
                plugin_name = implementation.plugin_name
                implementation.function(register=self._register_into(kind, plugin_name))

    def _register_into(self, kind: type[Provider], plugin_name: str) -> Any:
        def register(provider: Provider) -> None:
            if not isinstance(provider, kind):
                raise TypeError(
                    f"plugin {plugin_name!r} registered {provider!r}, which is not a "
                    f"{kind.__name__}"
                )
            providers = self.by_kind[kind]
            if provider.name in providers:
                raise ValueError(
                    f"plugin {plugin_name!r} registered a {kind.__name__} named "
                    f"{provider.name!r}, which another plugin already registered"
                )
            providers[provider.name] = provider
            kinds = self.registered_by.setdefault(plugin_name, {})
            kinds.setdefault(kind.__name__, []).append(provider.name)

        return register

    def providers(self, kind: type[P]) -> dict[str, P]:
        """Every provider of ``kind``, by name, in registration order."""
        return self.by_kind[kind]  # type: ignore[return-value]

    def get(self, kind: type[P], name: str) -> P:
        """The provider of ``kind`` called ``name``, or a NOT_CONFIGURED error naming the
        installed ones."""
        providers = self.providers(kind)
        if name not in providers:
            known = ", ".join(sorted(providers)) or "none"
            raise NotConfigured(
                f"no {kind.__name__} named {name!r} is registered (installed: {known}); "
                "install its plugin or pick one of these."
            )
        return providers[name]

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with its version and what it registers."""
        versions = {
            entry_point.name: entry_point.dist.version if entry_point.dist else None
            for entry_point in entry_points(group=ENTRY_POINT_GROUP)
        }
        infos = []
        for name, plugin in sorted(self.manager.list_name_plugin()):
            hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [])
            infos.append(
                PluginInfo(
                    name=name,
                    version=versions.get(name),
                    module=getattr(plugin, "__name__", repr(plugin)),
                    hooks=hooks,
                    providers=self.registered_by.get(name, {}),
                )
            )
        return infos


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` when a hook returned a coroutine (datasette's helper)."""
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value
