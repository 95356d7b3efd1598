"""Reusable widgets of the console: the screen tabs, the connection banner, action progress."""
