"""Per-second aggregation of flows per monitored prefix and per destination host.

A batch of flows becomes counter increments in a flat field namespace (one dict of counters per prefix per
second) that merges by plain addition: that is what lets several collectors add their shares into one Redis hash
with HINCRBY. Field names:

- ``b``, ``p``: bytes and packets of the prefix;
- ``c|<class>|b``, ``c|<class>|p``: per traffic class (see `CLASSES`);
- ``h|<addr>|b``, ``h|<addr>|p``, ``hc|<addr>|<class>|b``, ``hc|<addr>|<class>|p``: per destination host;
- ``proto|<n>|b``, ``sport|<n>|b``, ``dport|<n>|b``, ``flags|<n>|p``, ``src|<addr>|b`` (and ``|p``): breakdowns;
- ``nd|<addr>|b``, ``nd|<addr>|p``: per destination host, what the network dropped or consumed on the way (v9/IPFIX
  records with forwardingStatus, element 89, say so). Such traffic never reached the host, so it is in none of the
  fields above; it is the evidence that a filter still holds an attack back (`dropped_by_network`, read by the
  closed loop with `collector.store.read_dropped_toward`).

Per batch, only the heaviest hosts, ports and sources of each prefix are kept (heavy hitters show up in every
batch; a spoofed random spread must not turn into millions of counters).

Speed comes from never sorting records: every flow gets one small "combo" id (its exclusive base class times the
fragment bit), destination hosts of IPv4 prefixes up to a /16 get a dense slot, and one `np.bincount` over
(host slot, combo) yields prefix totals, class totals, host totals and host classes at once (a 0/1 matrix maps
combos to the overlapping classes). Only IPv6 and very large prefixes fall back to grouping by sorting. Sources
are ranked on an even sample of at most `SOURCE_SAMPLE` records with sums scaled back up: they are estimates
that only serve to name the heaviest sources.

Where the compiled helper (`collector.native`) is available, the two per-record groupings (records into host x
combo cells, and records into field values) are one hash pass each in C instead of several numpy passes; groups
are then put in the same order as the numpy path, so both give identical increments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from collector import native
from collector.records import (
    FLOW_DTYPE,
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
    address_halves,
    select_flows,
)
from collector.signals import AMPLIFICATION_SOURCE_PORTS, AttackVector

AMPLIFICATION_CLASSES: dict[str, tuple[AttackVector, int]] = {
    vector.value.removesuffix("_amplification"): (vector, port) for vector, port in AMPLIFICATION_SOURCE_PORTS.items()
}
CLASSES: tuple[str, ...] = (*AMPLIFICATION_CLASSES, "syn", "ack", "tcp", "icmp", "gre", "frag", "udp")

HOSTS_PER_BATCH = 256
RECORD_COUNTER_CAP = np.uint64(1 << 40)
DENSE_COUNT_LIMIT = 4 * 65536
DENSE_HOST_BITS = 16
DENSE_HOST_LIMIT = 1 << 18
TOP_PER_BATCH = 10
# Sources kept per prefix per batch: enough to name every amplifier of a reflection attack from a handful of them
# (the detector then matches FlowSpec rules on them), few enough that a spoofed spread stays bounded.
SOURCES_PER_BATCH = 20
SOURCE_SAMPLE = 4096

Fields = Counter[str]
# Hosts of a batch: prefix number, address halves, then (host x combo) bytes and packets.
HostTables = tuple[
    npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]
Sums = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]  # keys, bytes, packets

# Exclusive base classes: every flow is exactly one of these; the fragment bit doubles them into "combos".
_BASES: tuple[str, ...] = (*AMPLIFICATION_CLASSES, "udp", "syn", "ack", "tcp_other", "icmp", "gre", "other")
_BASE = {name: index for index, name in enumerate(_BASES)}
COMBOS = 2 * len(_BASES)


def _base_tables() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lookup tables: base by protocol, base of a TCP flow by flags, base of an unfragmented UDP flow by port."""
    by_proto = np.full(256, _BASE["other"], dtype=np.int64)
    by_proto[PROTO_ICMP] = by_proto[PROTO_ICMPV6] = _BASE["icmp"]
    by_proto[PROTO_GRE] = _BASE["gre"]
    by_flags = np.full(256, _BASE["tcp_other"], dtype=np.int64)
    for flags in range(256):
        if flags & TCP_SYN and not flags & TCP_ACK:
            by_flags[flags] = _BASE["syn"]
        elif flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | TCP_PSH) == TCP_ACK:
            by_flags[flags] = _BASE["ack"]
    by_port = np.full(65536, _BASE["udp"], dtype=np.int64)
    for name, (_, port) in AMPLIFICATION_CLASSES.items():
        by_port[port] = _BASE[name]
    return by_proto, by_flags, by_port


def _combo_classes() -> npt.NDArray[np.float64]:
    """(combo x class) 0/1 matrix: which of the overlapping `CLASSES` each combo counts towards."""
    column = {name: index for index, name in enumerate(CLASSES)}
    members: dict[str, tuple[str, ...]] = {name: (name,) for name in AMPLIFICATION_CLASSES}
    members.update(udp=("udp",), syn=("syn", "tcp"), ack=("ack", "tcp"), tcp_other=("tcp",), icmp=("icmp",),
                   gre=("gre",), other=())  # fmt: skip
    matrix = np.zeros((COMBOS, len(CLASSES)), dtype=np.float64)
    for base, name in enumerate(_BASES):
        for frag in (0, 1):
            for member in members[name]:
                matrix[2 * base + frag, column[member]] = 1.0
            if frag:
                matrix[2 * base + frag, column["frag"]] = 1.0
    return matrix


BASE_BY_PROTO, BASE_BY_TCP_FLAGS, BASE_BY_UDP_PORT = _base_tables()
COMBO_CLASSES = _combo_classes()
BREAKDOWN_FIELDS = {"proto": 0, "tcp_flags": 1, "sport": 2, "dport": 3}  # field numbers of sluice_agg_breakdown
# (flow field, counter label, values the field can take, rows kept per prefix per batch)
BREAKDOWNS = (
    ("proto", "proto", 256, 256), ("tcp_flags", "flags", 256, 256), ("sport", "sport", 65536, TOP_PER_BATCH),
    ("dport", "dport", 65536, TOP_PER_BATCH),
)

class _Compiled:
    """The aggregation functions of the compiled helper (declared in sluice_native.h)."""

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.sluice_agg_hosts = functions["sluice_agg_hosts"]
        self.sluice_agg_cells = functions["sluice_agg_cells"]
        self.sluice_agg_breakdown = functions["sluice_agg_breakdown"]
        self.sluice_agg_top = functions["sluice_agg_top"]


@cache
def _compiled() -> _Compiled | None:
    """The compiled aggregation functions, or None (numpy path)."""
    functions = {}
    for name in ("sluice_agg_hosts", "sluice_agg_cells", "sluice_agg_breakdown", "sluice_agg_top"):
        function = native.compiled_function(name)
        if function is None:
            return None
        functions[name] = function
    return _Compiled(functions)


def _capped_counts(flows: FlowArray) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Bytes and packets as floats for weighted counts, each record capped so a hostile one cannot overflow sums.

    (Redis HINCRBY is signed 64-bit: the cap keeps every merged counter far below it.)
    """
    nbytes = np.minimum(flows["bytes"], RECORD_COUNTER_CAP).astype(np.float64)
    return nbytes, np.minimum(flows["packets"], RECORD_COUNTER_CAP).astype(np.float64)


def _hash_slots(keys: int) -> int:
    """A power of two at least twice `keys`: open addressing stays short with the table at most half full."""
    return 1 << max(4, (2 * max(keys, 1) - 1).bit_length())


def combos(flows: FlowArray) -> npt.NDArray[np.int64]:
    """The combo id of every flow: 2 * exclusive base class + fragment bit (see `COMBO_CLASSES`)."""
    proto = flows["proto"]
    frag = flows["frag"] != 0
    base = BASE_BY_PROTO[proto]
    base = np.where(proto == PROTO_TCP, BASE_BY_TCP_FLAGS[flows["tcp_flags"]], base)
    # A fragmented UDP flow is only a fragment: its ports (if any) are not trusted for amplification.
    base = np.where((proto == PROTO_UDP) & ~frag, BASE_BY_UDP_PORT[flows["sport"]], base)
    result: npt.NDArray[np.int64] = base * 2 + frag
    return result


class AddressNames:
    """Bounded cache of field names per (hi, lo) address: formatting is the slow part of naming fields."""

    def __init__(self, limit: int = 200_000) -> None:
        self._names: dict[tuple[int, int], str] = {}
        self.cached_host_fields: dict[tuple[int, int], tuple[str, str, tuple[tuple[str, str], ...]]] = {}
        self._limit = limit

    def __call__(self, hi: int, lo: int) -> str:
        key = (hi, lo)
        name = self._names.get(key)
        if name is None:
            if len(self._names) >= self._limit:
                self._names.clear()
            name = self._names[key] = address_from_halves(hi, lo)
        return name

    def host_fields(self, hi: int, lo: int) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Field names of a host: bytes, packets, and (bytes, packets) per class in `CLASSES` order."""
        key = (hi, lo)
        fields = self.cached_host_fields.get(key)
        if fields is None:
            if len(self.cached_host_fields) >= self._limit:
                self.cached_host_fields.clear()
            name = self(hi, lo)
            per_class = tuple((f"hc|{name}|{c}|b", f"hc|{name}|{c}|p") for c in CLASSES)
            fields = self.cached_host_fields[key] = (f"h|{name}|b", f"h|{name}|p", per_class)
        return fields


class _Layout:
    """Where the hosts of each prefix go in a dense table (IPv4 prefixes of at most `DENSE_HOST_BITS` host bits)."""

    def __init__(self, cidrs: list[str]) -> None:
        size = len(cidrs)
        self.network_lo = np.zeros(size, dtype=np.uint64)
        self.span = np.zeros(size, dtype=np.int64)
        self.dense = np.zeros(size, dtype=bool)
        for index, cidr in enumerate(cidrs):
            address, length = cidr.split("/")
            hi, lo = address_halves(address)
            host_bits = (32 if ":" not in address else 128) - int(length)
            if ":" not in address and host_bits <= DENSE_HOST_BITS and hi == 0:
                self.network_lo[index] = lo
                self.span[index] = 1 << host_bits
                self.dense[index] = True


def _top_per_prefix(
    group_prefix: npt.NDArray[np.int64], weight: npt.NDArray[np.float64], limit: int,
    key: npt.NDArray[np.int64] | None = None,
) -> np.ndarray:
    """Indexes (ascending) of the `limit` heaviest groups of each prefix, ties going to the smallest `key`.

    `key` (default: the row number) makes the choice independent of row order. With one prefix in the batch, the
    common case, a partition finds the cut in linear time instead of sorting every group.
    """
    size = group_prefix.size
    if size <= limit:
        return np.arange(size)
    per_prefix = np.bincount(group_prefix)
    if per_prefix.max() <= limit:
        return np.arange(size)
    key = np.arange(size) if key is None else key
    if np.count_nonzero(per_prefix) == 1:
        cut = np.partition(weight, size - limit)[size - limit]
        above = np.flatnonzero(weight > cut)
        tied = np.flatnonzero(weight == cut)
        wanted = limit - above.size
        if tied.size > wanted:
            tied = tied[np.argpartition(key[tied], wanted - 1)[:wanted]]
        return np.sort(np.concatenate([above, tied]))
    order = np.lexsort((key, -weight, group_prefix))
    ranked_prefix = group_prefix[order]
    first = np.searchsorted(ranked_prefix, ranked_prefix, side="left")
    rank = np.arange(order.size) - first
    return np.sort(order[rank < limit])


class BatchAggregator:
    """Turns matched flows into per-prefix field increments; stateless apart from name and layout caches."""

    def __init__(self, *, use_native: bool = True) -> None:
        self.names = AddressNames()
        self.use_native = use_native
        self._layout: _Layout | None = None
        self._layout_cidrs: list[str] | None = None

    def _layout_for(self, cidrs: list[str]) -> _Layout:
        if self._layout is None or self._layout_cidrs is not cidrs:
            self._layout, self._layout_cidrs = _Layout(cidrs), cidrs
        return self._layout

    def aggregate(self, flows: FlowArray, prefix_index: npt.NDArray[np.int64], cidrs: list[str]) -> dict[str, Fields]:
        """Field increments per prefix cidr for the flows whose destination is in a monitored prefix."""
        matched = prefix_index >= 0
        if not matched.all():
            if not matched.any():
                return {}
            flows, prefix_index = select_flows(flows, matched), prefix_index[matched]
        pidx = prefix_index.astype(np.int64, copy=False)
        # Work on the prefixes present in the batch only (numbered 0..k-1): there may be 100,000 monitored ones.
        records_per_prefix = np.bincount(pidx, minlength=len(cidrs))
        present = np.flatnonzero(records_per_prefix)
        compact = np.zeros(len(cidrs), dtype=np.int64)
        compact[present] = np.arange(present.size)
        local = compact[pidx]
        names = [cidrs[i] for i in present.tolist()]
        out: dict[str, Fields] = {name: Counter() for name in names}
        lib = _compiled() if self.use_native else None
        if lib is not None and flows.dtype == FLOW_DTYPE:
            self._aggregate_native(lib, np.ascontiguousarray(flows), np.ascontiguousarray(local), names, out)
        else:
            self._aggregate_numpy(flows, local, names, out, self._layout_for(cidrs), present)
        self._sources(flows, local, names, out, records_per_prefix[present])
        return out

    def dropped_by_network(
        self, flows: FlowArray, prefix_index: npt.NDArray[np.int64], cidrs: list[str]
    ) -> dict[str, Fields]:
        """The ``nd|`` increments per prefix cidr: bytes and packets of the flows the network dropped or consumed,
        per destination host in a monitored prefix, the heaviest `HOSTS_PER_BATCH` hosts of each prefix.

        Numpy only: these are the records of what filters drop, a small share of a batch, and sorting them is cheap.
        """
        matched = prefix_index >= 0
        if not matched.any():
            return {}
        flows, pidx = select_flows(flows, matched), prefix_index[matched].astype(np.int64, copy=False)
        nbytes, npackets = _capped_counts(flows)
        hi, lo = flows["dst_hi"], flows["dst_lo"]
        order = np.lexsort((lo, hi, pidx))
        s_p, s_hi, s_lo = pidx[order], hi[order], lo[order]
        change = np.ones(order.size, dtype=bool)
        change[1:] = (s_p[1:] != s_p[:-1]) | (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])
        starts = np.flatnonzero(change)
        host_prefix, host_b = s_p[starts], np.add.reduceat(nbytes[order], starts)
        host_p = np.add.reduceat(npackets[order], starts)
        keep = _top_per_prefix(host_prefix, host_b, HOSTS_PER_BATCH)
        out: dict[str, Fields] = {}
        rows = zip(host_prefix[keep].tolist(), s_hi[starts][keep].tolist(), s_lo[starts][keep].tolist(),
                   host_b[keep].astype(np.int64).tolist(), host_p[keep].astype(np.int64).tolist(), strict=True)
        for prefix, host_hi, host_lo, b, p in rows:
            fields = out.setdefault(cidrs[prefix], Counter())
            name = self.names(host_hi, host_lo)
            fields[f"nd|{name}|b"] += b
            fields[f"nd|{name}|p"] += p
        return out

    def _aggregate_native(
        self, lib: _Compiled, flows: FlowArray, local: npt.NDArray[np.int64], names: list[str],
        out: dict[str, Fields],
    ) -> None:
        """Hosts and breakdowns with the compiled helper's hash passes."""
        self._hosts(self._host_tables_native(lib, flows, local), names, out)
        for field, label, width, limit in BREAKDOWNS:
            sums, keep = self._breakdown_native(lib, flows, local, field, width, len(names), limit)
            self._breakdown(sums, keep, names, out, label, width)

    def _aggregate_numpy(
        self, flows: FlowArray, local: npt.NDArray[np.int64], names: list[str], out: dict[str, Fields],
        layout: _Layout, present: npt.NDArray[np.int64],
    ) -> None:
        """Hosts and breakdowns with numpy passes (no compiled helper)."""
        nbytes, npackets = _capped_counts(flows)
        self._hosts(self._host_tables(flows, local, nbytes, npackets, layout, present), names, out)
        for field, label, width, limit in BREAKDOWNS:
            sums = self._breakdown_sums(local, flows[field], nbytes, npackets, len(names), width)
            keep = _top_per_prefix(sums[0] // width, sums[1], limit, key=sums[0])
            self._breakdown(sums, keep, names, out, label, width)

    @staticmethod
    def _host_groups(
        flows: FlowArray, local: npt.NDArray[np.int64], layout: _Layout, present: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """A group id per flow (one group per destination host) and each group's (local) prefix and address.

        Without sorting when every prefix in the batch is a small IPv4 prefix: a host's slot is its offset in its
        prefix, and used slots are renumbered densely. Otherwise groups come from sorting (prefix, address).
        """
        spans = layout.span[present]
        if layout.dense[present].all() and int(spans.sum()) <= DENSE_HOST_LIMIT:
            first_slot = np.cumsum(spans) - spans
            network_lo = layout.network_lo[present]
            slot = first_slot[local] + (flows["dst_lo"] - network_lo[local]).astype(np.int64)
            used = np.flatnonzero(np.bincount(slot, minlength=int(spans.sum())))
            renumber = np.zeros(int(spans.sum()), dtype=np.int64)
            renumber[used] = np.arange(used.size)
            group_prefix = np.searchsorted(first_slot, used, side="right") - 1
            group_lo = network_lo[group_prefix] + (used - first_slot[group_prefix]).astype(np.uint64)
            return renumber[slot], group_prefix, np.zeros(used.size, dtype=np.uint64), group_lo
        hi, lo = flows["dst_hi"], flows["dst_lo"]
        order = np.lexsort((lo, hi, local))
        s_p, s_hi, s_lo = local[order], hi[order], lo[order]
        change = np.ones(order.size, dtype=bool)
        change[1:] = (s_p[1:] != s_p[:-1]) | (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])
        starts = np.flatnonzero(change)
        group = np.empty(order.size, dtype=np.int64)
        group[order] = np.cumsum(change) - 1
        return group, s_p[starts], s_hi[starts], s_lo[starts]

    def _host_tables(
        self, flows: FlowArray, local: npt.NDArray[np.int64], nbytes: npt.NDArray[np.float64],
        npackets: npt.NDArray[np.float64], layout: _Layout, present: npt.NDArray[np.int64],
    ) -> HostTables:
        """Hosts (prefix, hi, lo ordered) and their bytes and packets per combo, with numpy."""
        group, group_prefix, group_hi, group_lo = self._host_groups(flows, local, layout, present)
        count = group_prefix.size
        key = group * COMBOS + combos(flows)
        # bincount with weights sums in float64 (the stubs say intp)
        table_b = cast(npt.NDArray[np.float64], np.bincount(key, weights=nbytes, minlength=count * COMBOS))
        table_p = cast(npt.NDArray[np.float64], np.bincount(key, weights=npackets, minlength=count * COMBOS))
        table_b, table_p = table_b.reshape(count, COMBOS), table_p.reshape(count, COMBOS)
        return group_prefix, group_hi, group_lo, table_b, table_p

    @staticmethod
    def _host_tables_native(lib: _Compiled, flows: FlowArray, local: npt.NDArray[np.int64]) -> HostTables:
        """The same tables from the compiled helper's hash pass, put in the numpy path's (prefix, hi, lo) order."""
        n = int(flows.size)
        slots = _hash_slots(n)
        hash_table = np.empty(slots, dtype=np.int64)
        group_prefix = np.empty(n, dtype=np.int64)
        group_hi, group_lo = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
        cell = np.empty(n, dtype=np.int64)
        count = lib.sluice_agg_hosts(flows, local, n, BASE_BY_PROTO, BASE_BY_TCP_FLAGS, BASE_BY_UDP_PORT, COMBOS,
                                     hash_table, slots, group_prefix, group_hi, group_lo, n, cell)  # fmt: skip
        if count < 0:
            raise RuntimeError("compiled host grouping overflowed its capacity")
        sums_b = np.zeros(count * COMBOS, dtype=np.uint64)
        sums_p = np.zeros(count * COMBOS, dtype=np.uint64)
        lib.sluice_agg_cells(flows, cell, n, int(RECORD_COUNTER_CAP), sums_b, sums_p)
        order = np.lexsort((group_lo[:count], group_hi[:count], group_prefix[:count]))
        table_b = sums_b.reshape(count, COMBOS)[order].astype(np.float64)
        table_p = sums_p.reshape(count, COMBOS)[order].astype(np.float64)
        return group_prefix[:count][order], group_hi[:count][order], group_lo[:count][order], table_b, table_p

    def _hosts(self, tables: HostTables, names: list[str], out: dict[str, Fields]) -> None:
        """Prefix totals, class totals, host totals and host classes from one (host, combo) count."""
        group_prefix, group_hi, group_lo, table_b, table_p = tables
        host_b, host_p = table_b.sum(axis=1), table_p.sum(axis=1)
        class_b, class_p = table_b @ COMBO_CLASSES, table_p @ COMBO_CLASSES

        prefix_b = np.bincount(group_prefix, weights=host_b, minlength=len(names))
        prefix_p = np.bincount(group_prefix, weights=host_p, minlength=len(names))
        prefix_class_b = np.zeros((len(names), len(CLASSES)))
        prefix_class_p = np.zeros((len(names), len(CLASSES)))
        np.add.at(prefix_class_b, group_prefix, class_b)
        np.add.at(prefix_class_p, group_prefix, class_p)
        for i, cidr in enumerate(names):
            fields = out[cidr]
            fields["b"] += int(prefix_b[i])
            fields["p"] += int(prefix_p[i])
            row_b, row_p = prefix_class_b[i].tolist(), prefix_class_p[i].tolist()
            for column, name in enumerate(CLASSES):
                if row_b[column] or row_p[column]:
                    fields[f"c|{name}|b"] += int(row_b[column])
                    fields[f"c|{name}|p"] += int(row_p[column])

        keep = _top_per_prefix(group_prefix, host_b, HOSTS_PER_BATCH)
        kept_prefix, kept_hi, kept_lo = group_prefix[keep].tolist(), group_hi[keep].tolist(), group_lo[keep].tolist()
        # Every field below occurs once per batch (one row per host, per host and class), so plain assignment
        # into the fresh counters is enough; it is the hot loop of a batch with many busy hosts.
        host_names = []
        cached, host_fields = self.names.cached_host_fields, self.names.host_fields
        for hi, lo, prefix, b, p in zip(kept_hi, kept_lo, kept_prefix, host_b[keep].astype(np.int64).tolist(),
                                        host_p[keep].astype(np.int64).tolist(), strict=True):  # fmt: skip
            fields = out[names[prefix]]
            name_b, name_p, per_class = cached.get((hi, lo)) or host_fields(hi, lo)
            host_names.append((fields, per_class))
            fields[name_b] = b
            fields[name_p] = p
        # Only the (host, class) cells that saw traffic: a host is typically in two or three of the classes.
        kept_b, kept_p = class_b[keep], class_p[keep]
        rows, columns = np.nonzero((kept_b != 0) | (kept_p != 0))
        cells = zip(rows.tolist(), columns.tolist(), kept_b[rows, columns].astype(np.int64).tolist(),
                    kept_p[rows, columns].astype(np.int64).tolist(), strict=True)  # fmt: skip
        for row, column, cb, cp in cells:
            fields, per_class = host_names[row]
            name_b, name_p = per_class[column]
            fields[name_b] = cb
            fields[name_p] = cp

    @staticmethod
    def _breakdown_sums(
        local: npt.NDArray[np.int64], values: npt.NDArray[np.unsignedinteger], nbytes: npt.NDArray[np.float64],
        npackets: npt.NDArray[np.float64], prefixes: int, width: int,
    ) -> Sums:
        """Bytes and packets per key (local prefix * width + field value), with numpy."""
        keys = local * width + values
        if prefixes * width <= DENSE_COUNT_LIMIT:
            size = prefixes * width
            # bincount with weights sums in float64 (the stubs say intp)
            dense_b = cast(npt.NDArray[np.float64], np.bincount(keys, weights=nbytes, minlength=size))
            dense_p = cast(npt.NDArray[np.float64], np.bincount(keys, weights=npackets, minlength=size))
            dense_slots: npt.NDArray[np.int64] = np.flatnonzero(dense_b + dense_p)
            return dense_slots, dense_b[dense_slots], dense_p[dense_slots]
        slots, inverse = np.unique(keys, return_inverse=True)
        sum_b = cast(npt.NDArray[np.float64], np.bincount(inverse, weights=nbytes))
        sum_p = cast(npt.NDArray[np.float64], np.bincount(inverse, weights=npackets))
        counted = (sum_b != 0) | (sum_p != 0)  # a key with neither bytes nor packets is no row
        return slots[counted], sum_b[counted], sum_p[counted]

    @staticmethod
    def _breakdown_native(
        lib: _Compiled, flows: FlowArray, local: npt.NDArray[np.int64], field: str, width: int, prefixes: int,
        limit: int,
    ) -> tuple[Sums, npt.NDArray[np.int64]]:
        """The same sums from the compiled helper's hash pass, and the rows to keep, chosen in C too."""
        n = int(flows.size)
        capacity = min(n, prefixes * width)
        slots = _hash_slots(capacity)
        hash_table = np.empty(slots, dtype=np.int64)
        keys = np.empty(capacity, dtype=np.int64)
        sum_b, sum_p = np.empty(capacity, dtype=np.uint64), np.empty(capacity, dtype=np.uint64)
        found = lib.sluice_agg_breakdown(flows, local, n, BREAKDOWN_FIELDS[field], width, int(RECORD_COUNTER_CAP),
                                         hash_table, slots, keys, sum_b, sum_p, capacity)  # fmt: skip
        if found < 0:
            raise RuntimeError(f"compiled {field} breakdown failed ({found})")
        keys, sum_b, sum_p = keys[:found], sum_b[:found], sum_p[:found]
        counted = (sum_b != 0) | (sum_p != 0)  # as the numpy path: a key with neither bytes nor packets is no row
        if not counted.all():
            keys, sum_b, sum_p = keys[counted], sum_b[counted], sum_p[counted]
            found = int(keys.size)
        if limit >= width:
            keep = np.arange(found)
        else:
            best = np.empty(prefixes * limit, dtype=np.int64)
            lib.sluice_agg_top(keys, sum_b, found, width, prefixes, limit, best)
            keep = np.sort(best[best >= 0])
        return (keys, sum_b.astype(np.float64), sum_p.astype(np.float64)), keep

    @staticmethod
    def _breakdown(
        sums: Sums, keep: npt.NDArray[np.int64], names: list[str], out: dict[str, Fields], label: str, width: int
    ) -> None:
        """Bytes and packets per value of one header field (protocol, flags, port), for the rows kept."""
        slots, sum_b, sum_p = sums[0][keep], sums[1][keep], sums[2][keep]
        rows = zip((slots // width).tolist(), (slots % width).tolist(), sum_b.astype(np.int64).tolist(),
                   sum_p.astype(np.int64).tolist(), strict=True)  # fmt: skip
        for prefix, value, b, p in rows:  # one row per (prefix, value): assignment, as for hosts
            fields = out[names[prefix]]
            fields[f"{label}|{value}|b"] = b
            fields[f"{label}|{value}|p"] = p

    def _sources(
        self, flows: FlowArray, local: npt.NDArray[np.int64], names: list[str], out: dict[str, Fields],
        records_per_prefix: npt.NDArray[np.int64],
    ) -> None:
        """Estimated bytes and packets of the heaviest sources per prefix, from an even sample of the records."""
        step = max(1, -(-local.size // SOURCE_SAMPLE))
        sample = flows[::step]
        s_local, s_hi, s_lo = local[::step], sample["src_hi"], sample["src_lo"]
        s_b, s_p = _capped_counts(sample)
        # Each prefix's sampled sums are scaled by its own sampling ratio, so estimates stay in bytes and packets.
        scale = records_per_prefix / np.maximum(np.bincount(s_local, minlength=len(names)), 1)
        order = np.lexsort((s_lo, s_hi, s_local))
        o_p, o_hi, o_lo = s_local[order], s_hi[order], s_lo[order]
        change = np.ones(order.size, dtype=bool)
        change[1:] = (o_p[1:] != o_p[:-1]) | (o_hi[1:] != o_hi[:-1]) | (o_lo[1:] != o_lo[:-1])
        starts = np.flatnonzero(change)
        src_prefix = o_p[starts]
        src_b = np.add.reduceat(s_b[order], starts) * scale[src_prefix]
        src_p = np.add.reduceat(s_p[order], starts) * scale[src_prefix]
        keep = _top_per_prefix(src_prefix, src_b, SOURCES_PER_BATCH)
        rows = zip(o_hi[starts][keep].tolist(), o_lo[starts][keep].tolist(), src_prefix[keep].tolist(),
                   np.rint(src_b[keep]).astype(np.int64).tolist(), np.rint(src_p[keep]).astype(np.int64).tolist(),
                   strict=True)  # fmt: skip
        for hi, lo, prefix, b, p in rows:
            fields = out[names[prefix]]
            name = self.names(hi, lo)
            fields[f"src|{name}|b"] += b
            fields[f"src|{name}|p"] += p
