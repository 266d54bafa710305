"""Routes as JSON and back, and the stable key that recognises the same route planned twice."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from devices.drivers.base import FlowSpecRule, UnicastRoute

Route = UnicastRoute | FlowSpecRule


def route_to_spec(route: Route) -> dict[str, Any]:
    spec = dataclasses.asdict(route)
    spec["type"] = "flowspec" if isinstance(route, FlowSpecRule) else "unicast"
    return spec


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def route_from_spec(spec: dict[str, Any]) -> Route:
    values = {key: _tuples(value) for key, value in spec.items() if key != "type"}
    if spec.get("type") == "flowspec":
        return FlowSpecRule(**values)
    return UnicastRoute(**values)


def route_key(route: Route) -> str:
    """Identical for equal routes (after the values' own normalisation), different otherwise."""
    canonical = json.dumps(route_to_spec(route), sort_keys=True, default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def without_neighbors(route: Route) -> Route:
    """The route as a router's configuration holds it: neighbor selection only matters to the speaker."""
    return dataclasses.replace(route, neighbors=())
