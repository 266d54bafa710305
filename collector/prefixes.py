"""Monitored prefixes, their thresholds, and vectorised longest-prefix matching of flow destinations."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.records import FlowArray

ALL_ONES = (1 << 64) - 1
# Prefix-wide thresholds default to the host's times the square root of the prefix's size, within these bounds.
CARPET_MULTIPLIER_MIN = 4.0
CARPET_MULTIPLIER_MAX = 64.0
BASELINE_FACTOR = 4.0
BASELINE_WARMUP_SECONDS = 900
# Baselines alarm no lower than a quarter of the host thresholds, and never below these.
BASELINE_FLOOR_BPS = 1_000_000
BASELINE_FLOOR_PPS = 1_000


def carpet_multiplier(prefix: str, most: float = CARPET_MULTIPLIER_MAX) -> float:
    """How many hosts' worth of traffic the whole prefix may carry before it counts as carpet bombing.

    The square root of its size, between 4 and `most` (a /24: 16 hosts' worth; a /32: the host alone). One host's
    limit for a whole /24 turned its ordinary background into "carpet bombing" beside any single-host attack.
    """
    hosts = ipaddress.ip_network(prefix, strict=False).num_addresses
    if hosts == 1:
        return 1.0
    return float(min(most, max(CARPET_MULTIPLIER_MIN, math.sqrt(hosts)), hosts))


@dataclass(frozen=True)
class MonitoredPrefix:
    """A customer prefix the collector watches, with the thresholds its owner chose.

    Host thresholds apply to each address inside the prefix; prefix (carpet-bombing) thresholds to the prefix's
    traffic beyond the hosts already found attacked; a threshold left at None is not checked. With
    `baseline_factor`, learned baselines (`collector.baselines`) also flag the prefix when its traffic is well above
    its normal for that hour of week, and a host that far outgrows the busiest host the prefix normally has, once
    `baseline_warmup` seconds were learned and the traffic is at least `baseline_min_bps` or `baseline_min_pps`:
    a slow ramp is caught before the fixed threshold. An attack ends after `hold_seconds` below every threshold
    (longer for a pulse wave: twice its longest pause). Carpet bombing is prefix traffic over the prefix threshold
    spread over at least `carpet_min_hosts` addresses, none of which is above the host threshold, unless it looks
    like the prefix's normal traffic (a flash crowd).
    """

    cidr: str
    tenant: str = ""
    host_bps: int | None = None
    host_pps: int | None = None
    prefix_bps: int | None = None
    prefix_pps: int | None = None
    hold_seconds: int = 60
    baseline_factor: float | None = None
    baseline_min_bps: int = 1_000_000
    baseline_min_pps: int = 1_000
    baseline_warmup: int = 900
    carpet_min_hosts: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "cidr", str(ipaddress.ip_network(self.cidr, strict=False)))

    @classmethod
    def from_thresholds(
        cls, cidr: str, tenant: str = "", *, host_bps: int | None, host_pps: int | None,
        prefix_bps: int | None = None, prefix_pps: int | None = None, baseline_factor: float | None = BASELINE_FACTOR,
        baseline_warmup: int = BASELINE_WARMUP_SECONDS, carpet_max: float = CARPET_MULTIPLIER_MAX,
        hold_seconds: int = 60,
    ) -> MonitoredPrefix:
        """A prefix as production watches it: prefix-wide thresholds left unset scale the host's with
        `carpet_multiplier`, and learned baselines alarm from a quarter of the host thresholds."""
        scale = carpet_multiplier(cidr, carpet_max)
        return cls(
            cidr, tenant, host_bps=host_bps, host_pps=host_pps,
            prefix_bps=prefix_bps or (int(host_bps * scale) if host_bps else None),
            prefix_pps=prefix_pps or (int(host_pps * scale) if host_pps else None),
            hold_seconds=hold_seconds, baseline_factor=baseline_factor, baseline_warmup=baseline_warmup,
            baseline_min_bps=max(BASELINE_FLOOR_BPS, (host_bps or 0) // 4),
            baseline_min_pps=max(BASELINE_FLOOR_PPS, (host_pps or 0) // 4),
        )

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The prefix as an ipaddress network."""
        return ipaddress.ip_network(self.cidr)

    def mapped_bounds(self) -> tuple[int, int]:
        """(network value, length) in the 128-bit space where IPv4 is IPv4-mapped."""
        net = self.network
        if net.version == 4:
            return int(net.network_address) | 0xFFFF_0000_0000, net.prefixlen + 96
        return int(net.network_address), net.prefixlen


def _masks(length: int) -> tuple[int, int]:
    if length <= 64:
        return (ALL_ONES << (64 - length)) & ALL_ONES, 0
    return ALL_ONES, (ALL_ONES << (128 - length)) & ALL_ONES


class PrefixMatcher:
    """Longest-prefix match of destination addresses against the monitored prefixes.

    Prefixes are grouped by length; each group is a sorted array searched with `np.searchsorted`, so matching a
    batch costs a few vector operations per distinct prefix length, whatever the number of prefixes.
    """

    def __init__(self, prefixes: list[MonitoredPrefix]) -> None:
        unique: dict[str, MonitoredPrefix] = {}
        for prefix in prefixes:
            unique.setdefault(prefix.cidr, prefix)
        self.prefixes = list(unique.values())
        groups: dict[int, list[tuple[int, int, int]]] = {}
        for index, prefix in enumerate(self.prefixes):
            value, length = prefix.mapped_bounds()
            groups.setdefault(length, []).append((value >> 64, value & ALL_ONES, index))
        self._groups: list[tuple[int, int, int, dict[int | None, tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]]]] = []
        for length in sorted(groups, reverse=True):
            hi_mask, lo_mask = _masks(length)
            by_hi: dict[int | None, list[tuple[int, int]]] = {}
            for hi, lo, index in groups[length]:
                if length <= 64:
                    by_hi.setdefault(None, []).append((hi, index))
                else:
                    by_hi.setdefault(hi, []).append((lo, index))
            tables: dict[int | None, tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]] = {}
            for high, entries in by_hi.items():
                entries.sort()
                tables[high] = (
                    np.array([e[0] for e in entries], dtype=np.uint64),
                    np.array([e[1] for e in entries], dtype=np.int64),
                )
            self._groups.append((length, hi_mask, lo_mask, tables))

    def match(self, flows: FlowArray) -> npt.NDArray[np.int64]:
        """Index into `self.prefixes` of the longest prefix holding each destination, or -1."""
        result = np.full(flows.size, -1, dtype=np.int64)
        if flows.size == 0 or not self.prefixes:
            return result
        dst_hi, dst_lo = flows["dst_hi"], flows["dst_lo"]
        for _, hi_mask, lo_mask, tables in self._groups:
            masked_hi = dst_hi & np.uint64(hi_mask)
            masked_lo = dst_lo & np.uint64(lo_mask)
            for hi, (networks, indexes) in tables.items():
                if hi is None:
                    candidates = result < 0
                    values = masked_hi[candidates]
                else:
                    candidates = (result < 0) & (masked_hi == np.uint64(hi))
                    values = masked_lo[candidates]
                if values.size == 0:
                    continue
                position = np.clip(np.searchsorted(networks, values), 0, networks.size - 1)
                found = networks[position] == values
                chosen = np.flatnonzero(candidates)
                result[chosen[found]] = indexes[position[found]]
        return result
