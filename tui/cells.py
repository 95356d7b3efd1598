"""Table cells from the users' own text: shown as typed, never read as Rich markup."""

from __future__ import annotations

from rich.text import Text


def plain(*values: str) -> list[Text]:
    return [Text(value, no_wrap=True, overflow="ellipsis") for value in values]
