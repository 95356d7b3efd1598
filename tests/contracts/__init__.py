"""Shared contract suites: one per provider kind, run by every bundled and third-party provider."""
