"""Translation of Sluice's route values into ExaBGP text API commands, and back into JSON for the journal.

Kept apart from the transport so the rendering can be read (and tested) against ExaBGP's grammar on its own.
Every value is checked as it is written (addresses parsed, numbers checked as integers, communities and flags
against their grammar): a command is one line the speaker executes, so a stray string could add a second one.
Render errors raise RenderError and nothing is sent.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any, TypeGuard

from devices.drivers.base import FRAGMENT_FLAGS, TCP_FLAGS, FlowSpecRule, RenderError, UnicastRoute, ValueRange

Route = UnicastRoute | FlowSpecRule

# ExaBGP's traffic-rate is in bytes per second (RFC 8955); Sluice speaks bits per second.
BITS_PER_BYTE = 8


def family_of(route: Route) -> str:
    """The ExaBGP family name ("ipv4 unicast", "ipv6 flow", ...) the route belongs to."""
    kind = "flow" if isinstance(route, FlowSpecRule) else "unicast"
    return f"ipv{route.family} {kind}"


def _ranges(values: Iterable[ValueRange], what: str) -> str:
    """`[ =80 >=1000&<=2000 ]`: ExaBGP ORs the terms of a list and ANDs the parts joined by `&`."""
    terms = []
    for low, high in values:
        if not (_is_int(low) and _is_int(high)) or low < 0 or high < low:
            raise RenderError(f"bad {what} range ({low}, {high})")
        terms.append(f"={low}" if low == high else f">={low}&<={high}")
    return "[ " + " ".join(terms) + " ]"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _flow_prefix(prefix: str) -> str:
    """IPv6 FlowSpec prefixes carry an offset (RFC 8956); Sluice always matches from bit 0."""
    network = ipaddress.ip_network(prefix)
    return f"{network}/0" if network.version == 6 else str(network)


def flow_match(rule: FlowSpecRule) -> str:
    """The match part of a flow command, which is also the rule's NLRI (its identity on the wire)."""
    parts = [f"destination {_flow_prefix(rule.destination)}"]
    if rule.source:
        parts.append(f"source {_flow_prefix(rule.source)}")
    if rule.protocols:
        keyword = "protocol" if rule.family == 4 else "next-header"
        parts.append(f"{keyword} {_ranges(rule.protocols, 'protocol')}")
    if rule.destination_ports:
        parts.append(f"destination-port {_ranges(rule.destination_ports, 'port')}")
    if rule.source_ports:
        parts.append(f"source-port {_ranges(rule.source_ports, 'port')}")
    if rule.packet_lengths:
        parts.append(f"packet-length {_ranges(rule.packet_lengths, 'packet length')}")
    if not set(rule.tcp_flags) <= set(TCP_FLAGS) or not set(rule.fragments) <= set(FRAGMENT_FLAGS):
        raise RenderError("unknown TCP or fragment flag")
    if rule.tcp_flags:
        parts.append("tcp-flags [ " + " ".join(rule.tcp_flags) + " ]")
    if rule.icmp_types:
        parts.append(f"icmp-type {_ranges(rule.icmp_types, 'icmp type')}")
    if rule.icmp_codes:
        parts.append(f"icmp-code {_ranges(rule.icmp_codes, 'icmp code')}")
    if rule.fragments:
        parts.append("fragment [ " + " ".join(rule.fragments) + " ]")
    return " ".join(parts)


def flow_action(rule: FlowSpecRule) -> str:
    if rule.action == "discard":
        return "discard"
    if rule.action == "rate-limit":
        if not _is_int(rule.rate_bps) or rule.rate_bps < 0:
            raise RenderError("negative rate")
        return f"rate-limit {rule.rate_bps // BITS_PER_BYTE}"
    if rule.action == "redirect":
        asn, _, number = str(rule.redirect_target).partition(":")
        if not (asn.isascii() and asn.isdigit() and number.isascii() and number.isdigit()):
            raise RenderError(f"redirect target must be ASN:NN, got {rule.redirect_target!r}")
        return f"redirect {int(asn)}:{int(number)}"
    if not _is_int(rule.dscp) or not 0 <= rule.dscp <= 63:
        raise RenderError(f"DSCP {rule.dscp} out of range")
    return f"mark {rule.dscp}"


def _community(value: str) -> str:
    high, sep, low = str(value).partition(":")
    if (not sep or not (high.isascii() and high.isdigit() and low.isascii() and low.isdigit())
            or int(high) > 65535 or int(low) > 65535):
        raise RenderError(f"bad community {value!r}")
    return f"{int(high)}:{int(low)}"


def unicast_attributes(route: UnicastRoute, local_as: int) -> str:
    """Path attributes of a unicast route. A prepend of N sends the speaker's ASN N+1 times on eBGP."""
    parts = [f"next-hop {ipaddress.ip_address(route.next_hop)}"]
    if route.communities:
        parts.append("community [ " + " ".join(_community(c) for c in route.communities) + " ]")
    if not _is_int(route.as_path_prepend) or not 0 <= route.as_path_prepend <= 32:
        raise RenderError(f"as_path_prepend {route.as_path_prepend} out of range 0..32")
    if route.as_path_prepend:
        parts.append("as-path [ " + " ".join([str(local_as)] * (route.as_path_prepend + 1)) + " ]")
    if route.local_preference is not None:
        if not _is_int(route.local_preference) or not 0 <= route.local_preference < 2**32:
            raise RenderError(f"local_preference {route.local_preference!r} out of range")
        parts.append(f"local-preference {route.local_preference}")
    return " ".join(parts)


def _address(value: str) -> str:
    """An address as ExaBGP reads it; anything else (a second command after a newline...) is refused."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as error:
        raise RenderError(f"{value!r} is not an IP address") from error


def neighbor_prefix(neighbors: Iterable[str]) -> str:
    """`neighbor A , neighbor B ` selects peers in ExaBGP's API; empty selects every peer."""
    selected = [f"neighbor {_address(n)}" for n in neighbors]
    return " , ".join(selected) + " " if selected else ""


def announce_command(route: Route, local_as: int, neighbors: Iterable[str] = ()) -> str:
    prefix = neighbor_prefix(neighbors)
    if isinstance(route, FlowSpecRule):
        return f"{prefix}announce flow route {flow_match(route)} {flow_action(route)}"
    return f"{prefix}announce route {ipaddress.ip_network(route.prefix)} {unicast_attributes(route, local_as)}"


def withdraw_command(route: Route, neighbors: Iterable[str] = ()) -> str:
    prefix = neighbor_prefix(neighbors)
    if isinstance(route, FlowSpecRule):
        return f"{prefix}withdraw flow route {flow_match(route)}"
    return f"{prefix}withdraw route {ipaddress.ip_network(route.prefix)} next-hop {_address(route.next_hop)}"


def nlri_key(route: Route) -> str:
    """What ExaBGP keys its RIB by: two routes with the same key replace each other on a neighbor."""
    if isinstance(route, FlowSpecRule):
        return "flow " + flow_match(route)
    return "unicast " + route.prefix


def route_to_json(route: Route) -> str:
    """Canonical JSON of a route for the journal: equal routes give equal strings."""
    if isinstance(route, FlowSpecRule):
        data: dict[str, object] = {"kind": "flow", **_fields(route)}
    else:
        data = {"kind": "unicast", **_fields(route)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _fields(route: Route) -> dict[str, object]:
    return {name: getattr(route, name) for name in route.__dataclass_fields__}


def route_from_json(text: str) -> Route:
    data = json.loads(text)
    kind = data.pop("kind")
    if kind == "unicast":
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return UnicastRoute(**fields)
    converted: dict[str, object] = {}
    for name, value in data.items():
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        converted[name] = value
    return FlowSpecRule(**converted)  # type: ignore[arg-type]
