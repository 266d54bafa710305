"""A mitigation in the customer's words: what protects its traffic and why, never the provider's internals.

The SOC sees everything: engine inputs, other centers' headroom, element names and their errors, operator names,
next hops and communities. A customer (its pages, its API, its reports) sees its own mitigation: the level, the
center, the first clause of the reason, the routes for its own prefixes, how many elements carry them, and who
acted where that was its own user. Every customer-facing face goes through these functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEGRADED = "degraded: part of the provider's network is being repaired; the mitigation holds on the rest"
PENDING = "the provider's network has not taken this yet; it is retrying"
PROVIDER = "your provider's operations team"
OVERRIDE = re.compile(r"^Operator override by [^.]*\.\s*")


def reason(text: str) -> str:
    """The decision in one clause ("divert to Frankfurt"): no center headroom, costs or operator names."""
    overridden = bool(OVERRIDE.match(text or ""))
    head = OVERRIDE.sub("", text or "").split(". ", 1)[0]
    return f"{head} (chosen by {PROVIDER})" if overridden and head else head


def actor(text: str, tenant_slug: str) -> str:
    """Who acted: the customer's own users by name, the engine as such, anyone of the provider as the provider."""
    if not text:
        return ""
    if text.startswith("engine"):
        return text
    kind, _, rest = text.partition(":")
    name, _, where = rest.partition("@")
    if kind == "user" and where == tenant_slug:
        return name
    return PROVIDER


def error(text: str) -> str:
    if not text:
        return ""
    return DEGRADED if text.startswith("degraded:") else PENDING


@dataclass(frozen=True)
class CustomerAction:
    kind: str
    route: str
    status: str
    reason: str
    refusal: str
    carried_on: int
    failed_on: int


def _what(kind: str, route: str, spec: dict[str, Any]) -> str:
    """What the action does to the customer's traffic, from the action itself (its reason names peers)."""
    if kind == "diversion":
        return f"traffic to {route} is steered through the scrubbing center, cleaned and returned"
    if kind == "rtbh":
        return f"traffic to {route} is dropped upstream (blackhole): the last resort"
    return f"FlowSpec at the edge: {spec.get('action') or 'filter'} matching traffic to {route}"


def action(row: Any) -> CustomerAction:
    """An action as the customer sees it: its own route, and on how many elements, not which ones."""
    deployments = list(row.deployments.all())
    route = str(row.spec.get("prefix") or row.spec.get("destination") or "")
    return CustomerAction(
        kind=row.kind, route=route, status=row.status,
        reason=_what(row.kind, route, row.spec), refusal=row.refusal_reason,
        carried_on=sum(d.state == "present" for d in deployments),
        failed_on=sum(d.state == "failed" for d in deployments),
    )
