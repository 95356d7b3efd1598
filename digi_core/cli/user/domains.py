"""`digi domains`: platform and custom domains, adding one and proving you own it."""

from __future__ import annotations

from typing import Any

import click

from digi_core.cli import cli
from digi_core.cli.user.common import (
    api_option,
    console,
    json_option,
    print_json,
    print_table,
    query,
    run,
    signed_in,
)
from digi_core.errors import NotFound

FIELDS = "id name kind isDefault verified verifiedAt componentId verificationRecord"
COMPONENTS = "query($id: ID!) { service(id: $id) { components { id name isPrimary } } }"
ADD = (
    "mutation($domain: String!, $component: ID) { addDomain(domain: $domain, "
    f"componentId: $component) {{ {FIELDS} }} }}"
)
VERIFY = f"mutation($id: ID!) {{ verifyDomain(id: $id) {{ {FIELDS} }} }}"


@cli.group()
def domains() -> None:
    """List domains, add a custom domain to a service and verify it.

    \b
    Example:
      digi domains add 12 shop.example.com
    """


@domains.command("list")
@api_option
@json_option
def list_domains(api_url: str, as_json: bool) -> None:
    """List the platform's domains and your custom domains.

    JSON: a list of {id, name, kind (PLATFORM or CUSTOM), isDefault, verified, verifiedAt,
    componentId, verificationRecord}.

    \b
    Example:
      digi domains list --json
    """
    found = query(api_url, f"{{ domains {{ {FIELDS} }} }}")["domains"]
    if as_json:
        print_json(found)
        return
    print_table(
        ["id", "name", "kind", "verified", "default"],
        [
            [item["id"], item["name"], item["kind"], item["verified"], item["isDefault"]]
            for item in found
        ],
        "No domains.",
    )


@domains.command("add")
@click.argument("service_id")
@click.argument("domain")
@click.option("--component", help="The component it points to (default: the primary one).")
@api_option
def add_domain(api_url: str, service_id: str, domain: str, component: str | None) -> None:
    """Add a custom domain to a service's component (Pro plan); prints the DNS record that
    proves you own it.

    \b
    Example:
      digi domains add 12 shop.example.com --component web
    """
    added = run(_add(api_url, service_id, domain, component))
    console.print(f"Added {added['name']} (id {added['id']}).", markup=False)
    if not added["verified"]:
        console.print("Create this DNS record to prove you own it:", markup=False)
        console.print(f"  {added['verificationRecord']}", markup=False)
        console.print(f"then run `digi domains verify {added['id']}`.", markup=False)


async def _add(api_url: str, service_id: str, domain: str, component: str | None) -> Any:
    async with signed_in(api_url) as client:
        components = (await client.query(COMPONENTS, {"id": service_id}))["service"]["components"]
        chosen = next(
            (
                item
                for item in components
                if (item["name"] == component if component else item["isPrimary"])
            ),
            None,
        )
        if chosen is None:
            raise NotFound(f"service {service_id} has no component {component}", field="component")
        added = await client.query(ADD, {"domain": domain, "component": chosen["id"]})
        return added["addDomain"]


@domains.command("verify")
@click.argument("domain_id")
@api_option
def verify_domain(api_url: str, domain_id: str) -> None:
    """Look up your custom domain's TXT record; once it matches, the domain is verified.

    \b
    Example:
      digi domains verify 3
    """
    domain = query(api_url, VERIFY, {"id": domain_id})["verifyDomain"]
    if domain["verified"]:
        console.print(f"{domain['name']} is verified.", markup=False)
    else:
        console.print(
            f"{domain['name']} is not verified yet: create {domain['verificationRecord']}",
            markup=False,
        )
