"""The user commands of ``digi``: clients of Digi's API (GraphQL over HTTP, live streams over
WebSocket). They never import the models or the database."""

from __future__ import annotations

from digi_core.cli import cli

# Each module registers its commands.
from digi_core.cli.user import (  # noqa: F401
    account,
    deploy,
    deployment_log,
    domains,
    env,
    logs,
    services,
)

cli.epilog = """\b
Exit codes:
  0    ok
  1    failed (a deploy that did not end running, an unhealthy API)
  2    wrong usage or input (BAD_USER_INPUT)
  3    not signed in or not allowed (UNAUTHENTICATED, FORBIDDEN): run `digi login`
  4    not found (NOT_FOUND)
  5    over your plan's limits (PLAN_LIMIT)
  6    not configured on the server (NOT_CONFIGURED)
  7    conflict (CONFLICT)
  8    rate limited (RATE_LIMITED): wait and try again
  69   the API does not answer (UNREACHABLE): start it with `digi server` or pass --api
  130  interrupted (Ctrl-C)

\b
Shell completion (bash, zsh, fish), e.g. in ~/.bashrc:
  eval "$(_DIGI_COMPLETE=bash_source digi)"
  (zsh: _DIGI_COMPLETE=zsh_source; fish: _DIGI_COMPLETE=fish_source digi | source)
"""
