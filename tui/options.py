"""How often the console polls, checks the API's health and retries: tests make them short."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleOptions:
    poll_seconds: float = 5.0
    health_seconds: float = 3.0
    retry_seconds: float = 2.0
    log_tail: int = 200
