"""Packaging: import names say what they are, and the core never imports a plugin or the TUI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_installed_import_names(tmp_path: Path) -> None:
    """What the install provides, seen from outside the checkout (-P: no cwd on sys.path)."""
    code = (
        "import importlib.util, json\n"
        "names = ['plugins', 'tui', 'local', 'caddy', 'digi_core', 'digi_local', 'digi_proxmox',"
        " 'digi_caddy', 'digi_cloudflare', 'digi_stripe', 'digi_railpack', 'digi_ssh',"
        " 'digi_tui']\n"
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(result.stdout)
    assert [name for name, present in found.items() if present] == [
        "digi_core",
        "digi_local",
        "digi_proxmox",
        "digi_caddy",
        "digi_cloudflare",
        "digi_stripe",
        "digi_railpack",
        "digi_ssh",
        "digi_tui",
    ]


def test_core_imports_no_plugin_and_no_ui() -> None:
    code = (
        "import json, sys\n"
        "import digi_core.server.app, digi_core.cli, digi_core.cli.operator, digi_core.models\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'digi_local','digi_proxmox','digi_caddy','digi_cloudflare','digi_stripe',"
        "'digi_railpack','digi_ssh','digi_tui','textual'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
