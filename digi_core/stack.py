"""The ``digi.toml`` stack file: a typed model, parsing with errors that name key and line.

```toml
name = "shop"
[services.web]
type = "github"
repo = "https://github.com/acme/shop"
port = 8080
[services.web.env]
DATABASE_URL = "${{db.DATABASE_URL}}"
[services.db]
type = "postgres"
```

Every value passes the validators the API uses (``names`` and the services' own checks), so a
file can never carry what ``createService`` would refuse. A problem reads
``digi.toml:7: services.web.port: Port 70000 is not allowed: use a number from 1 to 65535.``
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from digi_core import names, references, services
from digi_core.errors import BadUserInput
from digi_core.models import ComponentType
from digi_core.services import MAX_COMPONENTS, ComponentSpec
from digi_core.toml_lines import BARE_KEY, KeyPath, key_lines

MAX_STACK_BYTES = 64 * 1024
MAX_PROBLEMS_SHOWN = 20
FILENAME = "digi.toml"

# Keys that only mean something for some component types; the API ignores them elsewhere,
# a file that sets them is more likely mistaken than meant.
KEYS_FOR_TYPES: dict[str, frozenset[ComponentType]] = {
    "repo": frozenset({ComponentType.GITHUB}),
    "branch": frozenset({ComponentType.GITHUB}),
    "commit": frozenset({ComponentType.GITHUB}),
    "dockerfile": frozenset({ComponentType.GITHUB, ComponentType.UPLOAD}),
    # For a managed database: the server's image instead of the platform's default.
    "image": frozenset({ComponentType.DOCKER, ComponentType.POSTGRES, ComponentType.REDIS}),
}
# The API's argument names (BadUserInput.field) as digi.toml keys.
KEYS_OF_API_FIELDS = {
    "image": "image",
    "repoUrl": "repo",
    "branch": "branch",
    "commit": "commit",
    "dockerfile": "dockerfile",
    "startCommand": "start",
    "port": "port",
    "healthcheckPath": "healthcheck",
    "vars": "env",
    "key": "env",
    "value": "env",
}

Value = TypeVar("Value")


def _checked(validate: Callable[[Value], Value]) -> AfterValidator:
    """A pydantic validator from one of the API's: its BadUserInput becomes a pydantic error."""

    def check(value: Value) -> Value:
        try:
            return validate(value)
        except BadUserInput as error:
            # The message goes through the context: a template would read its braces.
            raise PydanticCustomError("digi", "{message}", {"message": error.message}) from None

    return AfterValidator(check)


def _env_value(value: str) -> str:
    names.validate_env_value(value)
    references.find(value)
    return value


def _pattern(regex: re.Pattern[str]) -> Any:
    """The regex for the JSON Schema: it helps editors; the validators (the API's) stay the rule."""
    return Field(json_schema_extra={"pattern": f"^{regex.pattern}$"})


ServiceName = Annotated[str, _checked(names.validate_service_name), _pattern(names.SERVICE_NAME)]
ComponentName = Annotated[
    str, _checked(names.validate_component_name), _pattern(names.SERVICE_NAME)
]
GitUrl = Annotated[str, _checked(names.validate_git_url)]
Branch = Annotated[str, _checked(names.validate_branch)]
Commit = Annotated[str, _checked(names.validate_commit)]
Image = Annotated[str, _checked(names.validate_image_reference)]
Port = Annotated[
    int, _checked(names.validate_port), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]
HealthcheckPath = Annotated[str, _checked(names.validate_healthcheck_path)]
EnvKey = Annotated[str, _checked(names.validate_env_key), _pattern(names.ENV_KEY)]
EnvValue = Annotated[str, _checked(_env_value)]


class StackComponent(BaseModel):
    """One ``[services.<name>]`` table."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["github", "docker", "postgres", "redis", "upload"] = Field(
        description="What the component is: an app built from Git or an upload, an image, "
        "or a managed database."
    )
    repo: GitUrl | None = Field(None, description="Git repository URL (github).")
    branch: Branch | None = Field(None, description="Branch to build (github; default main).")
    commit: Commit | None = Field(None, description="Commit to build instead of the branch tip.")
    dockerfile: str | None = Field(None, description="Dockerfile path inside the source.")
    image: Image | None = Field(
        None, description="Docker image reference (docker; or a postgres or redis server's)."
    )
    port: Port | None = Field(None, description="Port the app listens on inside its container.")
    healthcheck: HealthcheckPath | None = Field(
        None, description="HTTP path that answers below 500 once the app is ready."
    )
    start: str | None = Field(None, description="Start command, instead of the image's own.")
    env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        description="Env vars; ${{component.VARIABLE}} refers to another component's.",
        json_schema_extra={"additionalProperties": False},
    )

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> StackComponent:
        component_type = ComponentType(self.type)
        for key, types in KEYS_FOR_TYPES.items():
            if getattr(self, key) is not None and component_type not in types:
                allowed = " or ".join(sorted(kind.value for kind in types))
                raise _key_error(key, f"a {self.type} component takes no {key}; {allowed} ones do")
        if component_type is ComponentType.DOCKER and self.image is None:
            raise _key_error("image", 'a docker component needs an image, e.g. "nginx:1.27"')
        if component_type is ComponentType.GITHUB and self.repo is None:
            raise _key_error("repo", "a github component needs a repo (its Git URL)")
        return self

    def spec(self, name: str) -> ComponentSpec:
        """This component as the services module takes it, validated the API's way."""
        spec = ComponentSpec(
            name=name,
            type=ComponentType(self.type),
            image=self.image,
            repo_url=self.repo,
            branch=self.branch,
            commit=self.commit,
            dockerfile=self.dockerfile,
            start_command=self.start,
            port=self.port,
            healthcheck_path=self.healthcheck,
            env=dict(self.env),
        )
        # The same function validates createService's input: one set of rules, and the spec
        # comes back normalised as it will be stored (default branch, lowercase commit).
        return services.validated_spec(spec)


class Stack(BaseModel):
    """A whole ``digi.toml``: the service's name and its components, in file order."""

    model_config = ConfigDict(extra="forbid", strict=True, title="digi.toml")

    name: ServiceName = Field(description="The service's name.")
    services: dict[ComponentName, StackComponent] = Field(
        description=f"The components, by name (at most {MAX_COMPONENTS}).",
        json_schema_extra={"additionalProperties": False, "maxProperties": MAX_COMPONENTS},
    )

    @model_validator(mode="after")
    def _fits_a_service(self) -> Stack:
        if not self.services:
            raise _key_error("services", "a stack needs at least one component")
        if len(self.services) > MAX_COMPONENTS:
            raise _key_error(
                "services",
                f"a stack has at most {MAX_COMPONENTS} components, "
                f"this one has {len(self.services)}",
            )
        for name, component in self.services.items():
            try:
                component.spec(name)
            except BadUserInput as error:
                key = KEYS_OF_API_FIELDS.get(error.field or "")
                path = ("services", name, key) if key else ("services", name)
                raise PydanticCustomError(
                    "digi", "{message}", {"message": error.message, "path": path}
                ) from None
        return self

    def component_specs(self) -> list[ComponentSpec]:
        """The components as ``services.create_service`` and ``update_service`` take them."""
        return [component.spec(name) for name, component in self.services.items()]


def _key_error(key: str, message: str) -> PydanticCustomError:
    """An error about ``key`` of the model being validated (pydantic would name the model)."""
    return PydanticCustomError("digi", "{message}", {"message": message, "key": key})


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a stack file, at a line, about a key path (empty: the whole file)."""

    line: int
    path: str
    message: str

    def shown(self, filename: str = FILENAME) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{filename}:{self.line}: {where}{self.message}"


class StackError(BadUserInput):
    """A stack file that cannot be applied: one line per problem, each naming line and key."""

    def __init__(self, problems: list[Problem], filename: str = FILENAME) -> None:
        lines = [problem.shown(filename) for problem in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"… and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(lines), field="toml")
        self.problems = problems


def parse_stack(text: str, filename: str = FILENAME) -> Stack:
    """A ``Stack`` from a file's text; StackError lists every problem with its line."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise StackError([Problem(1, "", "the file is not valid UTF-8 text")], filename) from None
    if size > MAX_STACK_BYTES:
        limit = f"a stack file is limited to {MAX_STACK_BYTES // 1024} KiB"
        raise StackError([Problem(1, "", f"the file has {size} bytes; {limit}")], filename)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StackError([_syntax_problem(str(error), text)], filename) from None
    try:
        return Stack.model_validate(document)
    except ValidationError as error:
        lines = key_lines(text)
        # In file order; pydantic's order (the model's fields) breaks ties, and duplicates go.
        problems = dict.fromkeys(_problem(details, lines) for details in error.errors())
        raise StackError(sorted(problems, key=lambda problem: problem.line), filename) from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``digi.toml``, for editors (taplo, Even Better TOML)."""
    schema = Stack.model_json_schema(schema_generator=_TomlJsonSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


class _TomlJsonSchema(GenerateJsonSchema):
    """TOML has no null: an optional key is one that may be left out, not one that may be null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


# --- problems -------------------------------------------------------------------------------

SYNTAX_LOCATION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (dict, "a table"),
    (list, "an array"),
    (datetime, "a date-time"),
    (date, "a date"),
    (time, "a time"),
)
EXPECTED_TYPES = {
    "int_type": "an integer",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
}


def _syntax_problem(message: str, text: str) -> Problem:
    match = SYNTAX_LOCATION.search(message)
    if match:
        line, column = match.groups()
        return Problem(int(line), "", f"invalid TOML: {message[: match.start()]} (column {column})")
    # tomllib says "(at end of document)" for a problem on the last line.
    reason = message.replace(" (at end of document)", "")
    return Problem(max(1, text.count("\n") + 1), "", f"invalid TOML: {reason}")


def _problem(details: Any, lines: dict[KeyPath, int]) -> Problem:
    context = details.get("ctx") or {}
    path: KeyPath = tuple(part for part in details["loc"] if part != "[key]")
    if "path" in context:
        path = tuple(context["path"])
    elif "key" in context:
        path = (*path, context["key"])
    return Problem(_line_of(path, lines), _shown_path(path), _message(details, path))


def _message(details: Any, path: KeyPath) -> str:
    kind = details["type"]
    if kind == "digi":
        return str(details["ctx"]["message"])
    if kind == "extra_forbidden":
        return f"unknown key; known keys here: {', '.join(_known_keys(path))}"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        expected = f"must be one of {details['ctx']['expected']}"
        given = details["input"]
        return expected if isinstance(given, str) else f"{expected}, not {_type_name(given)}"
    if kind in EXPECTED_TYPES:
        return f"must be {EXPECTED_TYPES[kind]}, not {_type_name(details['input'])}"
    return str(details["msg"])


def _type_name(value: object) -> str:
    """What a TOML value is, for a message; never the value itself (env values are secrets)."""
    return next((name for kind, name in TYPE_NAMES if isinstance(value, kind)), "a value")


def _known_keys(path: KeyPath) -> list[str]:
    model: type[BaseModel] = Stack if len(path) == 1 else StackComponent
    return list(model.model_fields)


def _shown_path(path: KeyPath) -> str:
    shown = ""
    for part in path:
        if isinstance(part, int):
            shown += f"[{part}]"
            continue
        key = part if BARE_KEY.fullmatch(part) else json.dumps(part)
        shown += f".{key}" if shown else key
    return shown


def _line_of(path: KeyPath, lines: dict[KeyPath, int]) -> int:
    """The line of ``path``, or of its nearest parent that the file spells out (a missing key
    is reported at its table)."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1
