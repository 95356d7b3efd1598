"""The whole GraphQL schema, its error mapping, and the aiohttp view that serves it."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from aiohttp import web
from graphql import GraphQLError
from strawberry.aiohttp.views import GraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from digi_core import __version__
from digi_core.api.account_ops import AccountMutation, AccountQuery
from digi_core.api.admin_ops import AdminMutation, AdminQuery
from digi_core.api.console_ops import ConsoleQuery, ConsoleSubscription
from digi_core.api.context import Context
from digi_core.api.platform_ops import PlatformMutation, PlatformQuery
from digi_core.api.service_ops import ServiceMutation, ServiceQuery, ServiceSubscription
from digi_core.api.stack_ops import StackMutation
from digi_core.errors import DigiError

log = logging.getLogger(__name__)


@strawberry.type
class MetaQuery:
    @strawberry.field(description="The version of Digi serving this API.")
    def version(self) -> str:
        return __version__


Query = merge_types(
    "Query", (MetaQuery, AccountQuery, ServiceQuery, AdminQuery, PlatformQuery, ConsoleQuery)
)
Mutation = merge_types(
    "Mutation", (AccountMutation, ServiceMutation, StackMutation, AdminMutation, PlatformMutation)
)
Subscription = merge_types("Subscription", (ServiceSubscription, ConsoleSubscription))


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


def make_schema(
    query: type = Query, mutation: type | None = Mutation, subscription: type | None = Subscription
) -> strawberry.Schema:
    return DigiSchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        extensions=[
            lambda: MaskErrors(should_mask_error=_is_unexpected, error_message="Internal error.")
        ],
    )


class DigiGraphQLView(GraphQLView[Context, None]):
    async def get_context(
        self, request: web.Request, response: web.Response | web.WebSocketResponse
    ) -> Context:
        return Context(request=request, response=response)

    async def on_ws_connect(self, context: Context) -> Any:
        """A subscription connection must carry a valid token in ``connection_init``."""
        try:
            await context.require_user()
        except DigiError as error:
            raise ConnectionRejectionError({"message": error.message, "code": error.code}) from None
        return None


def make_view(schema: strawberry.Schema, *, graphiql: bool) -> DigiGraphQLView:
    return DigiGraphQLView(
        schema=schema,
        graphql_ide="graphiql" if graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
    )
