"""Rates, rules and routes in one line each, as the story's faces print them."""

from __future__ import annotations

from typing import Any


def rate_text(value: float | None, unit: str = "bps") -> str:
    """A rate as a person reads it (`38.2 Gbps`, `1.2 Mpps`); None (not measured) as a dash."""
    if value is None:
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def rates_text(bps: float | None, pps: float | None) -> str:
    """Bit/s and packets/s together (`38.2 Gbps · 4.8 Mpps`); empty when not measured."""
    return "" if bps is None else f"{rate_text(bps)} · {rate_text(pps, 'pps')}"


def _ranges(values: Any) -> str:
    parts = []
    for item in values or ():
        if isinstance(item, list | tuple) and len(item) == 2:
            low, high = item
            parts.append(str(low) if low == high else f"{low}-{high}")
        else:
            parts.append(str(item))
    return ",".join(parts)


def route_text(spec: dict[str, Any], *, internals: bool = True) -> str:
    """A rule or route in one line, as an operator reads it (`dst 203.0.113.10/32 proto 17 dport 53 → discard`).

    `internals=False` leaves out what is the provider's (next hops, a redirect's route target), for customers."""
    if spec.get("type") != "flowspec" and "action" not in spec:
        prefix = spec.get("prefix") or spec.get("destination") or "?"
        hop = f" via {spec['next_hop']}" if spec.get("next_hop") and internals else ""
        return f"{prefix}{hop}"
    parts = [f"dst {spec.get('destination', '?')}"]
    if spec.get("source"):
        parts.append(f"src {spec['source']}")
    for key, label in (("protocols", "proto"), ("destination_ports", "dport"), ("source_ports", "sport"),
                       ("packet_lengths", "len"), ("icmp_types", "icmp-type"), ("icmp_codes", "icmp-code")):
        if spec.get(key):
            parts.append(f"{label} {_ranges(spec[key])}")
    for key, label in (("tcp_flags", "tcp-flags"), ("fragments", "fragment")):
        if spec.get(key):
            parts.append(f"{label} {','.join(str(v) for v in spec[key])}")
    action = str(spec.get("action") or "filter")
    if action == "rate-limit" and spec.get("rate_bps") is not None:
        action += f" {rate_text(spec['rate_bps'])}"
    elif action == "redirect" and spec.get("redirect_target") and internals:
        action += f" {spec['redirect_target']}"
    elif action == "mark" and spec.get("dscp") is not None:
        action += f" dscp {spec['dscp']}"
    return " ".join(parts) + f" → {action}"
