"""Prefix arithmetic shared by the planner and the safety validators.

Parsing is cached because the planner and the validators look at the same few thousand prefixes on every plan,
and `ipaddress` parsing dominates the planning time otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Upstreams filter announcements longer than these, so a diversion can be no more specific.
MAX_DIVERSION_LENGTH = {4: 24, 6: 48}


_PARSED: dict[str, Network] = {}
_PARSED_LIMIT = 65536


def network(text: str) -> Network:
    """The network a prefix or an address names (an address becomes a host route)."""
    found = _PARSED.get(text)
    if found is None:
        found = ipaddress.ip_network(text, strict=False)
        remember(found, text)
    return found


def remember(parsed: Network, text: str | None = None) -> str:
    """Cache a network the caller already holds under its text, so validating its routes needs no parsing.

    Returns the canonical text. The cache is dropped whole when full: it only saves work within one plan.
    """
    canonical = str(parsed)
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[canonical] = parsed
    if text is not None:
        _PARSED[text] = parsed
    return canonical


def covering(target: Network, prefixes: Iterable[str]) -> Network | None:
    """The widest of `prefixes` that contains `target`, or None when the target is outside all of them."""
    best: Network | None = None
    for text in prefixes:
        candidate = network(text)
        covers = candidate.version == target.version and target.subnet_of(candidate)  # type: ignore[arg-type]
        if covers and (best is None or candidate.prefixlen < best.prefixlen):
            best = candidate
    return best


def overlapping(target: Network, prefixes: Iterable[str]) -> list[Network]:
    """The prefixes among `prefixes` that share any address with `target`."""
    return [p for p in map(network, prefixes) if p.version == target.version and target.overlaps(p)]


@dataclass(frozen=True)
class DiversionPrefix:
    """The prefix to divert for a target, or why there is none (`prefix` None and `problem` set)."""

    prefix: str | None
    problem: str | None


def diversion_prefix(target: Network, verified: Network) -> DiversionPrefix:
    """The /24 (IPv4) or /48 (IPv6) covering `target`, or the target itself when it is wider than that.

    Never shorter than the verified prefix, since Sluice may only announce verified space; and when the verified
    prefix is itself longer than the family's limit, there is no diversion at all, because upstreams filter it.
    """
    limit = MAX_DIVERSION_LENGTH[target.version]
    if verified.prefixlen > limit:
        return DiversionPrefix(
            None,
            f"the verified prefix {verified} is longer than /{limit}, which upstreams filter, so it cannot be "
            "diverted by BGP",
        )
    length = max(min(target.prefixlen, limit), verified.prefixlen)
    return DiversionPrefix(remember(target.supernet(new_prefix=length)), None)
