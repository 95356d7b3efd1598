"""The GraphQL schema and its aiohttp view (strawberry), with Digi's error mapping."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.aiohttp.views import GraphQLView
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from digi_core import __version__
from digi_core.errors import DigiError

log = logging.getLogger(__name__)


@strawberry.type
class Query:
    @strawberry.field(description="The version of Digi serving this API.")
    def version(self) -> str:
        return __version__


def _is_unexpected(error: GraphQLError) -> bool:
    """Mask errors that are neither a DigiError nor a GraphQL validation error."""
    original = error.original_error
    return original is not None and not isinstance(original, DigiError | GraphQLError)


class DigiSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # DigiErrors are answers for the user, not faults: only log the unexpected ones.
        for error in errors:
            if _is_unexpected(error):
                log.error(
                    "unexpected error in GraphQL %s", error.path, exc_info=error.original_error
                )


def make_schema(query: type = Query) -> strawberry.Schema:
    return DigiSchema(
        query=query,
        extensions=[
            lambda: MaskErrors(should_mask_error=_is_unexpected, error_message="Internal error.")
        ],
    )


def make_view(schema: strawberry.Schema, *, graphiql: bool) -> GraphQLView[Any, Any]:
    return GraphQLView(schema=schema, graphql_ide="graphiql" if graphiql else None)
