"""Reference variables in env values: ``${{component.VARIABLE}}``, resolved at deploy time.

A value such as ``postgres://…`` can instead say ``${{db.DATABASE_URL}}`` (Railway's syntax;
spaces inside the braces are allowed: ``${{ db.DATABASE_URL }}``), and the deploy pipeline puts
the variable of component ``db`` there. A referenced value is inserted as it is, never resolved
again, so references cannot loop. ``$${{`` writes a literal ``${{``; nothing else changes, so a
password holding ``$$`` stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from digi_core import names
from digi_core.deploys import databases
from digi_core.errors import BadUserInput
from digi_core.models import Component, ComponentType

ESCAPED_OPENING = "$${{"
SYNTAX = "${{component.VARIABLE}}"
# The escape first, so that ``$${{`` is never read as ``$`` + a reference. The body is bounded
# and cannot hold braces, so a value full of unclosed ``${{`` is scanned in linear time.
TOKEN = re.compile(r"\$\$\{\{|\$\{\{(?P<body>[^{}]{0,256})\}\}|\$\{\{")
BODY = re.compile(
    rf"\s*(?P<component>{names.SERVICE_NAME.pattern})\.(?P<variable>{names.ENV_KEY.pattern})\s*"
)

# What the platform itself gives a managed database to refer to, besides its own env vars,
# so that ``applyStack`` can check references before anything ran. Read off the function that
# supplies the values at deploy time (an unsaved component and a placeholder secret are all it
# needs), so the two cannot drift apart.
MANAGED_VARIABLES: Mapping[ComponentType, frozenset[str]] = {
    component_type: frozenset(
        databases.variables(Component(name="db", type=component_type), secret="")
    )
    for component_type in databases.MANAGED
}
SHOWN_VARIABLES = 20


@dataclass(frozen=True)
class Reference:
    """``${{component.variable}}`` in an env value."""

    component: str
    variable: str

    def __str__(self) -> str:
        return f"${{{{{self.component}.{self.variable}}}}}"


def find(value: str) -> list[Reference]:
    """The references in one env value, in order; BadUserInput for a ``${{`` that is not one."""
    found = []
    for match in TOKEN.finditer(value):
        if match.group(0) == ESCAPED_OPENING:
            continue
        found.append(_reference(match))
    return found


def references(env: Mapping[str, str], *, component: str | None = None) -> set[tuple[str, str]]:
    """Every ``(component, VARIABLE)`` that ``env``'s values refer to.

    ``component`` (whose env this is) only makes the error messages clearer.
    """
    return {
        (reference.component, reference.variable)
        for key, value in env.items()
        for reference in _found(value, component, key)
    }


def check(
    env: Mapping[str, str],
    known: Mapping[str, Collection[str]],
    *,
    component: str,
) -> None:
    """BadUserInput unless every reference in ``env`` names a known component and variable.

    ``known`` maps each component of the service to the variables it will have at deploy time.
    """
    for key, value in env.items():
        for reference in _found(value, component, key):
            if error := _unresolvable(reference, known, component, key):
                raise error


def resolve(
    env: Mapping[str, str],
    variables: Mapping[str, Mapping[str, str]],
    *,
    component: str,
) -> dict[str, str]:
    """``env`` with each reference replaced by the variable it names in ``variables``.

    ``variables`` maps component names to their variables, as the deploy pipeline knows them.
    A replaced value is not looked at again. BadUserInput names the first reference that
    cannot be resolved, and never a value (values are often secrets).
    """
    resolved = {}
    for key, value in env.items():
        parts: list[str] = []
        size = 0
        position = 0
        for match in TOKEN.finditer(value):
            if match.group(0) == ESCAPED_OPENING:
                replacement = "${{"
            else:
                reference = _checked_reference(match, component, key)
                if error := _unresolvable(reference, variables, component, key):
                    raise error
                replacement = variables[reference.component][reference.variable]
            parts += (value[position : match.start()], replacement)
            size += match.start() - position + len(replacement)
            position = match.end()
            # Checked as it grows: many references to one long value would otherwise build
            # an enormous string before any limit saw it.
            if size > names.MAX_ENV_VALUE_BYTES:
                raise _too_long(component, key)
        parts.append(value[position:])
        result = "".join(parts)
        if len(result.encode("utf-8", "replace")) > names.MAX_ENV_VALUE_BYTES:
            raise _too_long(component, key)
        resolved[key] = result
    return resolved


def provided_variables(component_type: ComponentType, *, port: int | None) -> frozenset[str]:
    """The variables the platform gives a component of this type: ``PORT`` when it has one,
    and a managed database's URL."""
    provided = MANAGED_VARIABLES.get(component_type, frozenset())
    return provided | {"PORT"} if port is not None else provided


def _reference(match: re.Match[str]) -> Reference:
    body = match.group("body")
    parsed = BODY.fullmatch(body) if body is not None else None
    if parsed is None:
        raise BadUserInput(
            f"`${{{{` must start a reference written {SYNTAX} (a component name, a dot and a "
            f"variable name); write {ESCAPED_OPENING} for a literal ${{{{",
            field="env",
        )
    return Reference(parsed.group("component"), parsed.group("variable"))


def _checked_reference(match: re.Match[str], component: str | None, key: str) -> Reference:
    try:
        return _reference(match)
    except BadUserInput as error:
        raise BadUserInput(f"{_owner(component, key)}: {error.message}", field="env") from None


def _found(value: str, component: str | None, key: str) -> list[Reference]:
    try:
        return find(value)
    except BadUserInput as error:
        raise BadUserInput(f"{_owner(component, key)}: {error.message}", field="env") from None


def _unresolvable(
    reference: Reference,
    variables: Mapping[str, Collection[str]],
    component: str | None,
    key: str,
) -> BadUserInput | None:
    """Why ``reference`` cannot be resolved against ``variables``, or None when it can."""
    refers = f"{_owner(component, key)} refers to {reference}, but"
    available = variables.get(reference.component)
    if available is None:
        return BadUserInput(
            f"{refers} the service has no component {reference.component}", field="env"
        )
    if reference.variable in available:
        return None
    listed = sorted(available)
    shown = ", ".join(listed[:SHOWN_VARIABLES])
    if len(listed) > SHOWN_VARIABLES:
        shown += f" and {len(listed) - SHOWN_VARIABLES} more"
    return BadUserInput(
        f"{refers} {reference.component} has no variable {reference.variable}; "
        f"it has: {shown or 'none'}",
        field="env",
    )


def _owner(component: str | None, key: str) -> str:
    return f"{component}'s {key}" if component else key


def _too_long(component: str, key: str) -> BadUserInput:
    return BadUserInput(
        f"{_owner(component, key)} is longer than {names.MAX_ENV_VALUE_BYTES // 1024} KiB once "
        "its references are resolved",
        field="env",
    )
