"""Digi's core: config, models, hookspecs, plugin manager, domain logic, API, worker and CLI."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("digi")
"""Decorate a plugin's hook implementations with this: ``@hookimpl def register_compute(...)``."""

__all__ = ["__version__", "hookimpl"]
