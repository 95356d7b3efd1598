"""The digi.toml stack file: parsing, errors naming key and line, hostile values, JSON Schema."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from digi_core import stack
from digi_core.models import ComponentType
from digi_core.services import ComponentSpec
from digi_core.stack import StackError, parse_stack
from tests.conftest import DIGI

SHOP = """\
name = "shop"

[services.web]
type = "github"
repo = "https://github.com/acme/shop"
commit = "ABCDEF1"
dockerfile = "docker/Dockerfile"
port = 8080
healthcheck = "/health"
start = "npm start"

[services.web.env]
DATABASE_URL = "${{db.DATABASE_URL}}"
QUEUE_URL = "redis://redis:6379"

[services.db]
type = "postgres"

[services.redis]
type = "redis"

[services.proxy]
type = "docker"
image = "nginx:1.27"
"""


def problems_of(text: str) -> list[str]:
    """The lines of the StackError that parsing ``text`` must raise."""
    with pytest.raises(StackError) as raised:
        parse_stack(text)
    assert raised.value.code == "BAD_USER_INPUT" and raised.value.field == "toml"
    return raised.value.message.splitlines()


def one_problem(text: str) -> str:
    [problem] = problems_of(text)
    return problem


def service(*lines: str) -> str:
    """A stack with one docker component ``web`` and ``lines`` added to its table (line 5 on;
    an image line takes the place of the default image, on line 4)."""
    image = "" if any(line.startswith("image") for line in lines) else 'image = "nginx:1.27"'
    return "\n".join(['name = "shop"', "[services.web]", 'type = "docker"', image, *lines])


def test_the_example_parses_into_specs_in_file_order() -> None:
    parsed = parse_stack(SHOP)
    assert parsed.name == "shop"
    specs = parsed.component_specs()
    assert [spec.name for spec in specs] == ["web", "db", "redis", "proxy"]
    assert specs[0] == ComponentSpec(
        name="web",
        type=ComponentType.GITHUB,
        repo_url="https://github.com/acme/shop",
        branch="main",  # the API's default, as it will be stored
        commit="abcdef1",
        dockerfile="docker/Dockerfile",
        start_command="npm start",
        port=8080,
        healthcheck_path="/health",
        env={"DATABASE_URL": "${{db.DATABASE_URL}}", "QUEUE_URL": "redis://redis:6379"},
    )
    assert specs[1] == ComponentSpec(name="db", type=ComponentType.POSTGRES)
    assert specs[3].image == "nginx:1.27"


def test_inline_tables_dotted_keys_and_quoted_keys_parse_too() -> None:
    parsed = parse_stack(
        'name = "shop"\n'
        'services.web = { type = "docker", image = "nginx", env = { A = "1" } }\n'
        "[services.worker]\n"
        'type = "docker"\n'
        'image = "busybox"\n'
        'env."B" = "2"\n'
    )
    assert parsed.services["web"].env == {"A": "1"}
    assert parsed.services["worker"].env == {"B": "2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            service("port = 70000"),
            "digi.toml:5: services.web.port: Port 70000 is not allowed: "
            "use a number from 1 to 65535.",
        ),
        (
            service('port = "80"'),
            "digi.toml:5: services.web.port: must be an integer, not a string",
        ),
        (
            service("port = true"),
            "digi.toml:5: services.web.port: must be an integer, not a boolean",
        ),
        (
            service("env = 3"),
            "digi.toml:5: services.web.env: must be a table, not an integer",
        ),
        (
            service("[services.web.env]", "A = 1"),
            "digi.toml:6: services.web.env.A: must be a string, not an integer",
        ),
        (
            service("colour = 'blue'"),
            "digi.toml:5: services.web.colour: unknown key; known keys here: type, repo, branch, "
            "commit, dockerfile, image, port, healthcheck, start, env",
        ),
        (
            'name = "shop"\nversion = 2\n[services.web]\ntype = "docker"\nimage = "nginx"\n',
            "digi.toml:2: version: unknown key; known keys here: name, services",
        ),
        (
            'name = "shop"\n[services.web]\ntype = "dokcer"\n',
            "digi.toml:3: services.web.type: must be one of 'github', 'docker', 'postgres', "
            "'redis' or 'upload'",
        ),
        (
            'name = "shop"\n\n[services.web]\nimage = "nginx"\n',
            "digi.toml:3: services.web.type: required",
        ),
        (
            '[services.web]\ntype = "docker"\nimage = "nginx"\n',
            "digi.toml:1: name: required",
        ),
        (
            'name = "shop"\n[services.web]\ntype = "docker"\n',
            'digi.toml:2: services.web.image: a docker component needs an image, e.g. "nginx:1.27"',
        ),
        (
            'name = "shop"\n[services.web]\ntype = "github"\n',
            "digi.toml:2: services.web.repo: a github component needs a repo (its Git URL)",
        ),
        (
            'name = "shop"\n[services.db]\ntype = "postgres"\nrepo = "https://github.com/a/b"\n',
            "digi.toml:4: services.db.repo: a postgres component takes no repo; github ones do",
        ),
        (
            service('dockerfile = "Dockerfile"'),
            "digi.toml:5: services.web.dockerfile: a docker component takes no dockerfile; "
            "github or upload ones do",
        ),
        (
            'name = "shop"\nservices = {}\n',
            "digi.toml:2: services: a stack needs at least one component",
        ),
        (
            'name = "shop"\nservices = 3\n',
            "digi.toml:2: services: must be a table, not an integer",
        ),
        (
            'name = "shop"\n[services]\nweb = "nginx"\n',
            "digi.toml:3: services.web: must be a table, not a string",
        ),
        (
            'name = "Shop!"\n[services.web]\ntype = "docker"\nimage = "nginx"\n',
            "digi.toml:1: name: Service name 'Shop!' is not allowed: use 1-24 lowercase letters, "
            "digits and single hyphens, starting with a letter and not ending with a hyphen.",
        ),
    ],
)
def test_every_problem_names_its_line_and_key(text: str, expected: str) -> None:
    assert one_problem(text) == expected


@pytest.mark.parametrize(
    ("lines", "key", "says"),
    [
        (['image = "nginx;rm -rf /"'], "services.web.image", "is not a valid image reference"),
        (['image = "$(curl evil)"'], "services.web.image", "is not a valid image reference"),
        (['image = "-v /:/host nginx"'], "services.web.image", "is not a valid image reference"),
        (['start = "a\\u0000b"'], "services.web.start", "without NUL"),
        (['healthcheck = "health"'], "services.web.healthcheck", "start with /"),
        (['env = { "BAD KEY" = "x" }'], 'services.web.env."BAD KEY"', "is not allowed"),
        (['env = { DIGI_TOKEN = "x" }'], "services.web.env.DIGI_TOKEN", "reserved"),
        (['env = { A = "x\\u0000" }'], "services.web.env.A", "NUL"),
        (['env = { A = "${{ db }}" }'], "services.web.env.A", "must start a reference"),
    ],
)
def test_hostile_docker_values_are_refused(lines: list[str], key: str, says: str) -> None:
    problem = one_problem(service(*lines))
    assert problem.startswith(f"digi.toml:5: {key}: "), problem
    assert says in problem


@pytest.mark.parametrize(
    ("line", "key", "says"),
    [
        ('repo = "ext::sh -c evil"', "repo", "Repository URL"),
        ('repo = "ext::sh%20-c%20evil"', "repo", "uses a <transport>:: form"),
        ('repo = "--upload-pack=evil"', "repo", "must not start with -"),
        ('repo = "file:///etc"', "repo", "file:// URLs are limited"),
        ('repo = "https://user:token@github.com/a/b"', "repo", "must not contain a user name"),
        ('branch = "--orphan"', "branch", "starts with -"),
        ('branch = "main;reboot"', "branch", "contains ;"),
        ('commit = "HEAD~1"', "commit", "hexadecimal"),
        ('dockerfile = "../../etc/passwd"', "dockerfile", "relative path inside the source"),
        ('dockerfile = "/Dockerfile"', "dockerfile", "relative path inside the source"),
    ],
)
def test_hostile_git_values_are_refused(line: str, key: str, says: str) -> None:
    text = 'name = "shop"\n[services.app]\ntype = "github"\n'
    if key != "repo":
        text += 'repo = "https://github.com/acme/shop"\n'
    problem = one_problem(text + line + "\n")
    assert problem.startswith(f"digi.toml:{text.count(chr(10)) + 1}: services.app.{key}: ")
    assert says in problem
    assert "token@" not in problem  # a credential in a URL is never repeated


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../x", '"../x"'),
        ("a b", '"a b"'),
        ("", '""'),
        ("Web", "Web"),
        ("a_b", "a_b"),
        ("x" * 19, "x" * 19),
        ("web-", "web-"),
    ],
)
def test_hostile_component_names_are_refused(name: str, shown: str) -> None:
    problem = one_problem(f'name = "shop"\n\n[services."{name}"]\ntype = "redis"\n')
    assert problem.startswith(f"digi.toml:3: services.{shown}: Component name"), problem


def test_every_problem_is_reported_in_line_order() -> None:
    text = textwrap.dedent(
        """\
        name = "shop"
        [services.web]
        type = "docker"
        image = "nginx:1.27"
        port = 0
        [services.web.env]
        "BAD KEY" = "x"
        GOOD = "y"
        [services.api]
        type = "github"
        repo = "ext::sh -c evil"
        mystery = 1
        """
    )
    problems = problems_of(text)
    assert [problem.split(":")[1] for problem in problems] == ["5", "7", "11", "12"]
    assert [problem.split(": ")[1] for problem in problems] == [
        "services.web.port",
        'services.web.env."BAD KEY"',
        "services.api.repo",
        "services.api.mystery",
    ]


def test_too_many_components() -> None:
    text = 'name = "shop"\n' + "".join(
        f'[services.db{index}]\ntype = "redis"\n' for index in range(11)
    )
    assert one_problem(text) == (
        "digi.toml:2: services: a stack has at most 10 components, this one has 11"
    )


def test_a_file_over_64_kib_is_refused_before_parsing() -> None:
    text = service("# " + "x" * stack.MAX_STACK_BYTES)
    assert one_problem(text) == (
        f"digi.toml:1: the file has {len(text)} bytes; a stack file is limited to 64 KiB"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'name = "shop"\n[services.web]\ntype = \n',
            "digi.toml:3: invalid TOML: Invalid value (column 8)",
        ),
        (
            'name = "shop"\n[services.web]\ntype = "docker"\n[services.web]\n',
            "digi.toml:4: invalid TOML: Cannot declare ('services', 'web') twice (column 14)",
        ),
        ('name = "shop', "digi.toml:1: invalid TOML: Unterminated string"),
        ('name = "shop"\nname = "again"\n', "digi.toml:2: invalid TOML: Cannot overwrite a value"),
    ],
)
def test_a_syntax_error_names_its_line(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


def test_the_filename_shown_is_the_callers() -> None:
    with pytest.raises(StackError) as raised:
        parse_stack("", filename="deploy/prod.toml")
    assert raised.value.message.splitlines() == [
        "deploy/prod.toml:1: name: required",
        "deploy/prod.toml:1: services: required",
    ]


def test_many_problems_are_cut_short() -> None:
    text = service("[services.web.env]", *(f'"BAD {index}" = "x"' for index in range(30)))
    problems = problems_of(text)
    assert len(problems) == stack.MAX_PROBLEMS_SHOWN + 1
    assert problems[-1] == "… and 10 more problems"


def test_the_json_schema_for_editors(subprocess_env: dict[str, str]) -> None:
    printed = subprocess.run(
        [DIGI, "schema", "--toml"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    schema = json.loads(printed)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["required"] == ["name", "services"]
    assert schema["additionalProperties"] is False
    component = schema["$defs"]["StackComponent"]
    assert set(component["properties"]) == set(stack.StackComponent.model_fields)
    assert component["properties"]["port"]["maximum"] == 65535
    # TOML has no null: optional keys are plain types, not "string or null".
    assert component["properties"]["image"]["type"] == "string"
    assert "services" in schema["properties"]
