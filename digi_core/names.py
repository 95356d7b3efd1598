"""Validation of the names users and operators type: DNS labels and domains."""

from __future__ import annotations

import re

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DOMAIN_LENGTH = 253


def validate_label(value: str, *, what: str = "name") -> str:
    """One DNS label (RFC 1123): lowercase letters, digits and inner hyphens, 1-63 long."""
    if not LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-63 lowercase letters, digits or hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def validate_domain(value: str) -> str:
    """A domain name such as ``example.com`` or ``localhost``; returned lowercased."""
    domain = value.strip().lower().removesuffix(".")
    if not domain or len(domain) > MAX_DOMAIN_LENGTH:
        raise ValueError(f"domain {value!r} must be 1-{MAX_DOMAIN_LENGTH} characters long")
    for label in domain.split("."):
        validate_label(label, what=f"domain {value!r}: part")
    return domain
