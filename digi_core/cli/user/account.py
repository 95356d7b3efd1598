"""Signing in and out, who you are, and the API's health: login, logout, whoami, status."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import click

from digi_core import __version__
from digi_core.cli import cli
from digi_core.cli.client import ApiClient, NotSignedIn
from digi_core.cli.credentials import (
    TOKEN_VARIABLE,
    SavedLogin,
    credentials_path,
    forget_login,
    save_login,
    token_for,
)
from digi_core.cli.user.common import (
    api_option,
    console,
    json_option,
    note_console,
    print_json,
    query,
    run,
)
from digi_core.errors import BadUserInput, DigiError, Unauthenticated

ME = "{ me { id email name role plan emailVerified } }"
SIGN_IN = (
    "mutation($email: String!, $password: String!, $tokenName: String!) { signIn(email: $email, "
    "password: $password, tokenName: $tokenName) { token } }"
)


@cli.command()
@click.option("--token", help="An API token (prompted for when neither option is given).")
@click.option("--email", help="Sign in with email and password: a new token is made.")
@click.option(
    "--token-name",
    default=lambda: f"digi cli on {socket.gethostname()}",
    show_default="digi cli on <this host>",
    help="Name of the token --email makes.",
)
@api_option
def login(api_url: str, token: str | None, email: str | None, token_name: str) -> None:
    """Sign in to Digi's API; the token is saved for the next commands.

    With --email the password is prompted for, or read from stdin when stdin is not a
    terminal, and exchanged for a new named token. The token is checked, then saved in your
    config directory (readable only by you), per API URL. DIGI_TOKEN overrides it.

    \b
    Example:
      digi login --token digi_xxxxxxxx
      digi login --email you@example.com
      echo "$PASSWORD" | digi login --email you@example.com --api https://digi.example.com
    """
    if token and email:
        raise click.UsageError("give --token or --email, not both")
    if email:
        token = run(_sign_in(api_url, email, _password(), token_name))
        login = SavedLogin(token, email, made_by_login=True)
    else:
        token = (token or click.prompt("API token", hide_input=True)).strip()
        login = SavedLogin(token)
    me = run(_check(api_url, login.token))
    save_login(api_url, SavedLogin(login.token, me["email"], login.made_by_login))
    console.print(f"Signed in to {api_url} as {me['email']} ({me['plan']} plan).", markup=False)
    console.print(f"Token saved in {credentials_path()}", markup=False)
    if os.environ.get(TOKEN_VARIABLE):
        note_console.print(f"note: {TOKEN_VARIABLE} is set and overrides the saved token")


def _password() -> str:
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise BadUserInput("no password given (on stdin or at the prompt)")
    return password


async def _sign_in(api_url: str, email: str, password: str, token_name: str) -> str:
    """A new token for ``email``: signed in without any saved token."""
    variables = {"email": email, "password": password, "tokenName": token_name}
    async with ApiClient(api_url, None) as client:
        try:
            return str((await client.query(SIGN_IN, variables))["signIn"]["token"])
        except NotSignedIn as error:
            raise Unauthenticated(f"{api_url}: {error.api_message}") from None


async def _check(api_url: str, token: str) -> Any:
    async with ApiClient(api_url, token) as client:
        try:
            return (await client.query(ME))["me"]
        except NotSignedIn as error:
            raise Unauthenticated(
                f"{api_url} refused this token ({error.api_message}): check it, or make a new "
                "one with `digi login --email`"
            ) from None


@cli.command()
@api_option
def logout(api_url: str) -> None:
    """Forget the saved token; one that `digi login --email` made is revoked too.

    \b
    Example:
      digi logout --api https://digi.example.com
    """
    login = forget_login(api_url)
    if login is None:
        console.print(f"Not signed in to {api_url}.", markup=False)
        return
    if login.made_by_login:
        try:
            run(_sign_out(api_url, login.token))
        except DigiError as error:
            note_console.print(f"note: the token was not revoked ({error.message})", markup=False)
    console.print(f"Signed out of {api_url}.", markup=False)


async def _sign_out(api_url: str, token: str) -> None:
    async with ApiClient(api_url, token) as client:
        await client.query("mutation { signOut }")


@cli.command()
@api_option
@json_option
def whoami(api_url: str, as_json: bool) -> None:
    """Show who the saved token (or DIGI_TOKEN) signs in as.

    JSON fields: id, email, name, role, plan, emailVerified.

    \b
    Example:
      digi whoami --json
    """
    me = query(api_url, ME)["me"]
    if as_json:
        print_json(me)
        return
    console.print(f"{me['email']} ({me['name'] or 'no name'})", markup=False)
    console.print(f"plan {me['plan']}, role {me['role']}, on {api_url}", markup=False)


@cli.command()
@api_option
@json_option
def status(api_url: str, as_json: bool) -> None:
    """Check the API's health and version, and who you are signed in as (with your plan).

    Exits 0 when the API is healthy, 1 when a part of it fails, 69 when it does not answer.
    JSON fields: api, cliVersion, health (status, version, checks), version, user (null when
    not signed in; else id, email, name, role, plan, emailVerified).

    \b
    Example:
      digi status --api https://digi.example.com
    """
    report = run(_status(api_url))
    health = report["health"]
    if as_json:
        print_json(report)
    else:
        console.print(f"API      {api_url}", markup=False)
        console.print(f"health   {health['status']}", markup=False)
        for part, result in health.get("checks", {}).items():
            console.print(f"  {part}: {result}", markup=False)
        console.print(f"version  {report['version']} (cli {__version__})", markup=False)
        user = report["user"]
        if user is None:
            console.print("user     not signed in: run `digi login`", markup=False)
        else:
            console.print(f"user     {user['email']}, plan {user['plan']}", markup=False)
    if health["status"] != "ok":
        sys.exit(1)


async def _status(api_url: str) -> dict[str, Any]:
    token, source = token_for(api_url)
    async with ApiClient(api_url, token, source) as client:
        health = await client.health()
        version = (await client.query("{ version }"))["version"]
        user = None
        if token:
            try:
                user = (await client.query(ME))["me"]
            except Unauthenticated as error:
                note_console.print(f"note: {error.message}", markup=False)
    return {
        "api": api_url,
        "cliVersion": __version__,
        "health": health,
        "version": version,
        "user": user,
    }
