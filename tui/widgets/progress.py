"""One line under a screen telling how the operator's last action went."""

from __future__ import annotations

from textual.widgets import Static


class ActionStatus(Static):
    DEFAULT_CSS = """
    ActionStatus { height: 1; padding: 0 1; color: $text-muted; }
    ActionStatus.-running { color: $warning; }
    ActionStatus.-failed { color: $error; }
    ActionStatus.-done { color: $success; }
    """

    def running(self, label: str) -> None:
        self._show("-running", f"⟳ {label}…")

    def done(self, text: str) -> None:
        self._show("-done", f"✓ {text}")

    def failed(self, label: str, message: str) -> None:
        self._show("-failed", f"✗ {label} failed: {message}")

    def _show(self, state: str, text: str) -> None:
        self.remove_class("-running", "-failed", "-done")
        self.add_class(state)
        self.update(text)
