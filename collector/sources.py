"""Attack sources as address blocks: exact where the budget allows, aggregated as narrowly as it must.

An attack reflected from a handful of amplifiers is best filtered on those amplifiers, but every block is one
FlowSpec rule per vector on every router, and routers and upstreams hold few. `aggregate_sources` covers the sources
with at most `limit` blocks, merging first the pair whose common block is narrowest, so every widening it makes is
the smallest available; it refuses (None) rather than match a block wider than `widest` (a /16 of IPv4 sources,
say), which would drop far more than the attack.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The widest source block a rule may match, per address family.
WIDEST_SOURCE_BLOCK: dict[int, int] = {4: 16, 6: 32}


def as_network(text: str) -> Network:
    """An address or block as a network ("192.0.2.1" is 192.0.2.1/32)."""
    return ipaddress.ip_network(text, strict=False)


def common_block(a: Network, b: Network) -> Network:
    """The narrowest block holding both (of one family)."""
    differing = (int(a.network_address) ^ int(b.network_address)).bit_length()
    length = min(a.prefixlen, b.prefixlen, a.max_prefixlen - differing)
    return a.supernet(new_prefix=length)


def collapse_networks(networks: Iterable[Network]) -> list[Network]:
    """The networks without overlaps or mergeable neighbours (exact: covers the same addresses)."""
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def aggregate_sources(
    sources: Iterable[Network], limit: int, widest: Mapping[int, int] = WIDEST_SOURCE_BLOCK
) -> list[Network] | None:
    """At most `limit` blocks covering every source, or None when that needs a block wider than `widest` allows
    (or `limit` is below one per address family present)."""
    blocks = collapse_networks(sources)
    while len(blocks) > limit:
        best: tuple[int, Network] | None = None
        for index in range(len(blocks) - 1):
            a, b = blocks[index], blocks[index + 1]
            if a.version != b.version:
                continue
            merged = common_block(a, b)
            if best is None or merged.prefixlen > best[1].prefixlen:
                best = (index, merged)
        if best is None or best[1].prefixlen < widest[best[1].version]:
            return None
        index, merged = best
        blocks = collapse_networks([*blocks[:index], merged, *blocks[index + 2:]])
    return blocks


def addresses_covered(blocks: Iterable[Network]) -> int:
    """How many addresses the blocks match together (they do not overlap once aggregated)."""
    return sum(block.num_addresses for block in blocks)
