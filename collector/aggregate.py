"""Per-second aggregation of flows per monitored prefix and per destination host.

A batch of flows becomes counter increments in a flat field namespace (one dict of counters per prefix per
second) that merges by plain addition: that is what lets several collectors add their shares into one Redis hash
with HINCRBY. Field names:

- ``b``, ``p``: bytes and packets of the prefix;
- ``c|<class>|b``, ``c|<class>|p``: per traffic class (see `CLASSES`);
- ``h|<addr>|b``, ``h|<addr>|p``, ``hc|<addr>|<class>|b``, ``hc|<addr>|<class>|p``: per destination host;
- ``proto|<n>|b``, ``sport|<n>|b``, ``dport|<n>|b``, ``flags|<n>|p``, ``src|<addr>|b`` (and ``|p``): breakdowns.

Per batch, only the heaviest hosts, ports and sources of each prefix are kept (heavy hitters show up in every
batch; a spoofed random spread must not turn into millions of counters).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

from collector.records import (
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    FlowArray,
    address_from_halves,
)
from mitigation.signal_types import AMPLIFICATION_SOURCE_PORTS, AttackVector

AMPLIFICATION_CLASSES: dict[str, tuple[AttackVector, int]] = {
    vector.value.removesuffix("_amplification"): (vector, port) for vector, port in AMPLIFICATION_SOURCE_PORTS.items()
}
CLASSES: tuple[str, ...] = (*AMPLIFICATION_CLASSES, "syn", "ack", "tcp", "icmp", "gre", "frag", "udp")

HOSTS_PER_BATCH = 256
RECORD_COUNTER_CAP = np.uint64(1 << 40)
DENSE_COUNT_LIMIT = 4 * 65536
TOP_PER_BATCH = 10

Fields = Counter[str]


def classify(flows: FlowArray) -> dict[str, npt.NDArray[np.bool_]]:
    """Masks of the traffic classes each flow belongs to (a flow can be in several, e.g. tcp and syn)."""
    proto = flows["proto"]
    flags = flows["tcp_flags"]
    frag = flows["frag"] == 1
    udp = proto == PROTO_UDP
    tcp = proto == PROTO_TCP
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    amplified = np.zeros(flows.size, dtype=bool)
    for name, (_, port) in AMPLIFICATION_CLASSES.items():
        masks[name] = udp & ~frag & (flows["sport"] == port)
        amplified |= masks[name]
    masks["syn"] = tcp & ((flags & TCP_SYN) != 0) & ((flags & TCP_ACK) == 0)
    masks["ack"] = tcp & ((flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | TCP_PSH)) == TCP_ACK)
    masks["tcp"] = tcp
    masks["icmp"] = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
    masks["gre"] = proto == PROTO_GRE
    masks["frag"] = frag
    masks["udp"] = udp & ~frag & ~amplified
    return masks


class AddressNames:
    """Bounded cache of address text for (hi, lo) halves: formatting is the slow part of naming fields."""

    def __init__(self, limit: int = 200_000) -> None:
        self._names: dict[tuple[int, int], str] = {}
        self._limit = limit

    def __call__(self, hi: int, lo: int) -> str:
        key = (hi, lo)
        name = self._names.get(key)
        if name is None:
            if len(self._names) >= self._limit:
                self._names.clear()
            name = self._names[key] = address_from_halves(hi, lo)
        return name


def _sum_by(keys: npt.NDArray[np.int64], values: npt.NDArray[np.uint64], size: int) -> npt.NDArray[np.int64]:
    return np.bincount(keys, weights=values.astype(np.float64), minlength=size).astype(np.int64)


class BatchAggregator:
    """Turns matched flows into per-prefix field increments; stateless apart from the address-name cache."""

    def __init__(self) -> None:
        self.names = AddressNames()

    def aggregate(self, flows: FlowArray, prefix_index: npt.NDArray[np.int64], cidrs: list[str]) -> dict[str, Fields]:
        """Field increments per prefix cidr for the flows whose destination is in a monitored prefix."""
        matched = prefix_index >= 0
        if not matched.any():
            return {}
        flows, pidx = flows[matched], prefix_index[matched]
        # A corrupt or hostile record must not overflow the 64-bit sums (Redis HINCRBY is signed 64-bit too).
        flows["bytes"] = np.minimum(flows["bytes"], RECORD_COUNTER_CAP)
        flows["packets"] = np.minimum(flows["packets"], RECORD_COUNTER_CAP)
        present = np.unique(pidx)
        out: dict[str, Fields] = {cidrs[i]: Counter() for i in present.tolist()}
        size = len(cidrs)
        nbytes, npackets = flows["bytes"], flows["packets"]
        totals_b, totals_p = _sum_by(pidx, nbytes, size), _sum_by(pidx, npackets, size)
        masks = classify(flows)
        for i in present.tolist():
            fields = out[cidrs[i]]
            fields["b"] += int(totals_b[i])
            fields["p"] += int(totals_p[i])
        class_columns = []
        for name in CLASSES:
            mask = masks[name]
            class_columns.append(mask)
            if not mask.any():
                continue
            cb, cp = _sum_by(pidx[mask], nbytes[mask], size), _sum_by(pidx[mask], npackets[mask], size)
            for i in np.flatnonzero(cp).tolist():
                fields = out[cidrs[i]]
                fields[f"c|{name}|b"] += int(cb[i])
                fields[f"c|{name}|p"] += int(cp[i])
        self._hosts(flows, pidx, cidrs, out, np.stack(class_columns, axis=1))
        self._breakdown(pidx, flows["proto"].astype(np.int64), nbytes, npackets, cidrs, out, "proto", limit=256)
        self._breakdown(pidx, flows["tcp_flags"].astype(np.int64), nbytes, npackets, cidrs, out, "flags", limit=256)
        self._breakdown(pidx, flows["sport"].astype(np.int64), nbytes, npackets, cidrs, out, "sport", TOP_PER_BATCH)
        self._breakdown(pidx, flows["dport"].astype(np.int64), nbytes, npackets, cidrs, out, "dport", TOP_PER_BATCH)
        self._sources(flows, pidx, cidrs, out)
        return out

    def _groups(
        self, pidx: npt.NDArray[np.int64], hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Sort order and group starts of records by (prefix, hi, lo) address."""
        if pidx.size and int(pidx.max()) < (1 << 31) and not hi.any() and ((lo >> np.uint64(32)) == 0xFFFF).all():
            # IPv4 only: one 64-bit key (prefix, address) sorts much faster than three.
            key = (pidx.astype(np.uint64) << np.uint64(32)) | (lo & np.uint64(0xFFFF_FFFF))
            order = np.argsort(key)
        else:
            order = np.lexsort((lo, hi, pidx))
        s_p, s_hi, s_lo = pidx[order], hi[order], lo[order]
        change = np.ones(order.size, dtype=bool)
        change[1:] = (s_p[1:] != s_p[:-1]) | (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])
        return order, np.flatnonzero(change)

    @staticmethod
    def _top_per_prefix(group_prefix: npt.NDArray[np.int64], weight: npt.NDArray[np.int64], limit: int) -> np.ndarray:
        """Indexes of the `limit` heaviest groups of each prefix."""
        order = np.lexsort((-weight, group_prefix))
        ranked_prefix = group_prefix[order]
        first = np.searchsorted(ranked_prefix, ranked_prefix, side="left")
        rank = np.arange(order.size) - first
        return order[rank < limit]

    def _hosts(
        self, flows: FlowArray, pidx: npt.NDArray[np.int64], cidrs: list[str], out: dict[str, Fields],
        class_matrix: npt.NDArray[np.bool_],
    ) -> None:
        order, starts = self._groups(pidx, flows["dst_hi"], flows["dst_lo"])
        nbytes = flows["bytes"][order].astype(np.int64)
        npackets = flows["packets"][order].astype(np.int64)
        host_b = np.add.reduceat(nbytes, starts)
        host_p = np.add.reduceat(npackets, starts)
        host_prefix = pidx[order][starts]
        keep = self._top_per_prefix(host_prefix, host_b, HOSTS_PER_BATCH)
        classes = class_matrix[order]
        class_b = np.add.reduceat(classes * nbytes[:, None], starts, axis=0)[keep]
        class_p = np.add.reduceat(classes * npackets[:, None], starts, axis=0)[keep]
        his = flows["dst_hi"][order][starts][keep].tolist()
        los = flows["dst_lo"][order][starts][keep].tolist()
        prefixes = host_prefix[keep].tolist()
        kept_b, kept_p = host_b[keep].tolist(), host_p[keep].tolist()
        for row, (hi, lo, prefix, b, p) in enumerate(zip(his, los, prefixes, kept_b, kept_p, strict=True)):
            fields = out[cidrs[prefix]]
            name = self.names(hi, lo)
            fields[f"h|{name}|b"] += b
            fields[f"h|{name}|p"] += p
            for column in np.flatnonzero(class_p[row]).tolist():
                fields[f"hc|{name}|{CLASSES[column]}|b"] += int(class_b[row, column])
                fields[f"hc|{name}|{CLASSES[column]}|p"] += int(class_p[row, column])

    def _breakdown(
        self, pidx: npt.NDArray[np.int64], values: npt.NDArray[np.int64], nbytes: npt.NDArray[np.uint64],
        npackets: npt.NDArray[np.uint64], cidrs: list[str], out: dict[str, Fields], label: str, limit: int,
    ) -> None:
        keys = pidx * 65536 + values
        present, compact = np.unique(pidx, return_inverse=True)
        if present.size * 65536 <= DENSE_COUNT_LIMIT:
            # Dense counting (no sort): the common case of a few attacked prefixes per batch.
            dense_keys = compact * 65536 + values
            size = present.size * 65536
            dense_b = np.bincount(dense_keys, weights=nbytes.astype(np.float64), minlength=size)
            dense_p = np.bincount(dense_keys, weights=npackets.astype(np.float64), minlength=size)
            slots = np.flatnonzero(dense_p)
            unique = present[slots // 65536] * 65536 + slots % 65536
            sum_b, sum_p = dense_b[slots].astype(np.int64), dense_p[slots].astype(np.int64)
        else:
            unique, inverse = np.unique(keys, return_inverse=True)
            sum_b = np.bincount(inverse, weights=nbytes.astype(np.float64)).astype(np.int64)
            sum_p = np.bincount(inverse, weights=npackets.astype(np.float64)).astype(np.int64)
        group_prefix = unique // 65536
        keep = self._top_per_prefix(group_prefix, sum_b, limit) if unique.size > limit else np.arange(unique.size)
        for key, b, p in zip(unique[keep].tolist(), sum_b[keep].tolist(), sum_p[keep].tolist(), strict=True):
            fields = out[cidrs[key // 65536]]
            fields[f"{label}|{key % 65536}|b"] += b
            fields[f"{label}|{key % 65536}|p"] += p

    def _sources(self, flows: FlowArray, pidx: npt.NDArray[np.int64], cidrs: list[str], out: dict[str, Fields]) -> None:
        order, starts = self._groups(pidx, flows["src_hi"], flows["src_lo"])
        src_b = np.add.reduceat(flows["bytes"][order].astype(np.int64), starts)
        src_p = np.add.reduceat(flows["packets"][order].astype(np.int64), starts)
        src_prefix = pidx[order][starts]
        keep = self._top_per_prefix(src_prefix, src_b, TOP_PER_BATCH)
        his = flows["src_hi"][order][starts][keep].tolist()
        los = flows["src_lo"][order][starts][keep].tolist()
        for hi, lo, prefix, b, p in zip(
            his, los, src_prefix[keep].tolist(), src_b[keep].tolist(), src_p[keep].tolist(), strict=True
        ):
            fields = out[cidrs[prefix]]
            name = self.names(hi, lo)
            fields[f"src|{name}|b"] += b
            fields[f"src|{name}|p"] += p
