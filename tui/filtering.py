"""The filter the operator types after `/`: words match anywhere, ``field:word`` one field."""

from __future__ import annotations

from collections.abc import Mapping


def matches(text: str, fields: Mapping[str, str]) -> bool:
    """Every word of ``text`` is found, case-insensitively: ``owner:alice`` in the owner field,
    a bare ``alice`` in any field."""
    for word in text.lower().split():
        name, colon, value = word.partition(":")
        if colon and name in fields:
            if value not in fields[name].lower():
                return False
        elif not any(word in field.lower() for field in fields.values()):
            return False
    return True
