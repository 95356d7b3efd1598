"""Reference variables in env values: finding, checking and resolving ${{component.VARIABLE}}."""

from __future__ import annotations

import time

import pytest

from digi_core import names, references
from digi_core.deploys import databases
from digi_core.errors import BadUserInput
from digi_core.models import Component, ComponentType

VARIABLES = {
    "db": {"DATABASE_URL": "postgres://digi:s3cret@db:5432/app", "PGHOST": "db"},
    "cache": {"REDIS_URL": "redis://cache:6379"},
    "web": {"PORT": "8080"},
}


def test_a_reference_is_replaced_by_the_variable() -> None:
    env = {"DATABASE_URL": "${{db.DATABASE_URL}}", "PLAIN": "as is"}
    assert references.resolve(env, VARIABLES, component="web") == {
        "DATABASE_URL": "postgres://digi:s3cret@db:5432/app",
        "PLAIN": "as is",
    }


def test_spaces_inside_the_braces_and_several_references_in_one_value() -> None:
    env = {"URLS": "${{ db.PGHOST }}:${{cache.REDIS_URL}} on ${{  web.PORT\t}}"}
    resolved = references.resolve(env, VARIABLES, component="web")
    assert resolved == {"URLS": "db:redis://cache:6379 on 8080"}


def test_a_referenced_value_is_not_resolved_again() -> None:
    variables = {"a": {"X": "${{b.Y}}"}, "b": {"Y": "never"}}
    assert references.resolve({"V": "${{a.X}}"}, variables, component="c") == {"V": "${{b.Y}}"}
    # A value referring to itself is one lookup, not a loop.
    loop = {"a": {"X": "${{a.X}}"}}
    assert references.resolve({"X": "${{a.X}}"}, loop, component="a") == {"X": "${{a.X}}"}


def test_unknown_component_is_named() -> None:
    with pytest.raises(BadUserInput) as raised:
        references.resolve({"DATABASE_URL": "${{ pg.DATABASE_URL }}"}, VARIABLES, component="web")
    assert raised.value.message == (
        "web's DATABASE_URL refers to ${{pg.DATABASE_URL}}, but the service has no component pg"
    )
    assert raised.value.field == "env"


def test_unknown_variable_lists_what_the_component_has_but_no_value() -> None:
    with pytest.raises(BadUserInput) as raised:
        references.resolve({"URL": "${{db.DB_URL}}"}, VARIABLES, component="web")
    assert raised.value.message == (
        "web's URL refers to ${{db.DB_URL}}, but db has no variable DB_URL; "
        "it has: DATABASE_URL, PGHOST"
    )
    assert "s3cret" not in raised.value.message
    with pytest.raises(BadUserInput, match="it has: none"):
        references.resolve({"A": "${{empty.X}}"}, {"empty": {}}, component="web")


def test_a_long_list_of_variables_is_cut_short() -> None:
    many = {"db": {f"V{index:02}": "x" for index in range(30)}}
    with pytest.raises(BadUserInput, match=r"V19 and 10 more$"):
        references.resolve({"A": "${{db.NOPE}}"}, many, component="web")


def test_dollar_dollar_keeps_a_literal_opening_and_nothing_else_changes() -> None:
    env = {
        "TEMPLATE": "$${{db.DATABASE_URL}}",
        "PASSWORD": "a$$b$c${x}$",
        "MIXED": "$${{ and ${{web.PORT}}",
    }
    assert references.resolve(env, VARIABLES, component="web") == {
        "TEMPLATE": "${{db.DATABASE_URL}}",
        "PASSWORD": "a$$b$c${x}$",
        "MIXED": "${{ and 8080",
    }
    assert references.references(env) == {("web", "PORT")}


@pytest.mark.parametrize(
    "value",
    [
        "${{db}}",
        "${{ db. }}",
        "${{.X}}",
        "${{db.X.Y}}",
        "${{Db.X}}",
        "${{db.1X}}",
        "${{db.X",
        "${{",
    ],
)
def test_a_malformed_reference_is_refused(value: str) -> None:
    with pytest.raises(BadUserInput, match=r"^web's A: `\$\{\{` must start a reference"):
        references.resolve({"A": value}, VARIABLES, component="web")
    with pytest.raises(BadUserInput, match=r"^A: "):
        references.references({"A": value})


def test_references_lists_what_an_env_refers_to() -> None:
    env = {
        "A": "${{db.DATABASE_URL}}",
        "B": "x ${{ cache.REDIS_URL }} ${{db.DATABASE_URL}}",
        "C": "none here",
    }
    assert references.references(env) == {("db", "DATABASE_URL"), ("cache", "REDIS_URL")}
    assert references.references({}) == set()
    assert [str(found) for found in references.find("${{ a.B }}-${{c.D}}")] == [
        "${{a.B}}",
        "${{c.D}}",
    ]


def test_check_accepts_known_names_and_refuses_others() -> None:
    known = {"db": {"DATABASE_URL"}, "web": {"PORT"}}
    references.check({"A": "${{db.DATABASE_URL}}", "B": "${{web.PORT}}"}, known, component="web")
    with pytest.raises(BadUserInput, match="but the service has no component cache"):
        references.check({"A": "${{cache.REDIS_URL}}"}, known, component="web")
    with pytest.raises(BadUserInput, match="db has no variable PGHOST; it has: DATABASE_URL"):
        references.check({"A": "${{db.PGHOST}}"}, known, component="web")


def test_what_the_platform_provides() -> None:
    assert "DATABASE_URL" in references.provided_variables(ComponentType.POSTGRES, port=None)
    assert references.provided_variables(ComponentType.REDIS, port=None) == {"REDIS_URL"}
    assert references.provided_variables(ComponentType.DOCKER, port=80) == {"PORT"}
    assert references.provided_variables(ComponentType.GITHUB, port=None) == set()


@pytest.mark.parametrize("component_type", [ComponentType.POSTGRES, ComponentType.REDIS])
def test_a_managed_database_offers_exactly_what_its_deploy_gives(
    component_type: ComponentType,
) -> None:
    """What applyStack accepts before a deploy is what the deploy then resolves references with."""
    given = databases.variables(Component(name="db", type=component_type), "s3cret")
    assert references.MANAGED_VARIABLES[component_type] == set(given)
    assert references.provided_variables(component_type, port=None) == set(given)
    assert references.provided_variables(component_type, port=5432) == {*given, "PORT"}


def test_every_managed_database_type_has_its_variables() -> None:
    assert set(references.MANAGED_VARIABLES) == databases.MANAGED


def test_a_resolved_value_is_held_to_the_size_limit() -> None:
    big = {"db": {"BIG": "x" * (names.MAX_ENV_VALUE_BYTES // 2 + 1)}}
    # Ten thousand references to a 16 KiB value would build 160 MB; it stops at the limit.
    many = "${{db.BIG}}" * 10_000
    with pytest.raises(BadUserInput, match="web's A is longer than 32 KiB once its references"):
        references.resolve({"A": many}, big, component="web")
    with pytest.raises(BadUserInput, match="longer than 32 KiB"):
        references.resolve({"A": "${{db.BIG}}${{db.BIG}}"}, big, component="web")


def test_many_unclosed_openings_are_scanned_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(BadUserInput):
        references.references({"A": "${{" + "a" * 200 + "${{" * 10_000})
    assert references.references({"A": "$${{" * 8_000}) == set()
    assert time.monotonic() - started < 1
