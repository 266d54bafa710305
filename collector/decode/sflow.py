"""sFlow v5 datagrams, decoded for a whole batch with numpy and no per-sample Python.

sFlow is a chain of length-prefixed samples and records, so offsets depend on what came before. Instead of walking
each datagram in Python, every step of the walk is taken for all datagrams (then all samples) at once: step k reads
the k-th sample header of every datagram that has one. The number of Python iterations is the largest sample count
in the batch, not the number of samples. Sampled packet headers (Ethernet, optional VLAN tags, IPv4/IPv6, TCP/UDP)
are then parsed from windows re-based at their L3 and L4 headers, so every field sits in a fixed column.

sFlow is XDR: every item length is a multiple of four, so with datagrams at 4-byte aligned offsets (the listener
aligns them) every header word is one element of a big-endian word view of the buffer, read without gathering
bytes. Unaligned input (tests, replays, malformed lengths) takes the byte-gathering path.

Where the compiled helper (`collector.native`, `sflow.c`) is available, `SflowDecoder.decode` hands the whole batch
to one C call that walks each datagram directly, an order of magnitude faster; the numpy path stays as the
fallback and as the reference the C code is tested against (same records, same order, same counters).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import numpy.typing as npt

from collector import native
from collector.decode.common import ByteArray, DecodeStats, IntArray, be32_at, gather_rows
from collector.records import FLOW_DTYPE, V4_MAPPED, FlowArray, empty_flows

BoolArray = npt.NDArray[np.bool_]

FLOW_SAMPLE = 1
EXPANDED_FLOW_SAMPLE = 3
RAW_HEADER = 1
SAMPLED_IPV4 = 3
SAMPLED_IPV6 = 4
HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12
WINDOW = 96  # QinQ (22) + IPv6 with fragment header (48) + TCP up to its flags (14)
MAX_STEPS = 256
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)
# A flow sample yields at most one record and takes at least 80 bytes to do so (sample header 8, flow sample 32,
# record header 8, record 32); a smaller divisor only over-allocates the output of the compiled decoder.
MIN_BYTES_PER_RECORD = 64
# Counters `sluice_sflow_decode` adds to, in the order of its `counters` argument.
NATIVE_COUNTERS = ("sflow_flow_samples", "records", "malformed", "sflow_non_ip_samples", "raw_chosen")


class _Words:
    """Big-endian 32-bit reads at many offsets of one buffer: a word view when aligned, byte gathers otherwise."""

    def __init__(self, u8: ByteArray) -> None:
        self.u8 = u8
        self.words = np.frombuffer(u8.data, dtype=">u4", count=u8.size // 4) if u8.size >= 4 else None

    def at(self, offsets: IntArray) -> npt.NDArray[np.uint32]:
        """Words at offsets; callers guarantee offset + 4 <= len(u8)."""
        if self.words is not None and u8_aligned(self.u8) and not (offsets & 3).any():
            words: npt.NDArray[np.uint32] = self.words[offsets >> 2].astype(np.uint32)
            return words
        return be32_at(self.u8, offsets)

    def safe(self, offsets: IntArray, valid: BoolArray) -> npt.NDArray[np.uint32]:
        """Words where `valid`, zero elsewhere, never reading outside the buffer."""
        if self.u8.size < 4:
            return np.zeros(offsets.size, dtype=np.uint32)
        return np.where(valid, self.at(np.where(valid, offsets, 0)), 0).astype(np.uint32)


def u8_aligned(u8: ByteArray) -> bool:
    """Whether the buffer itself starts at a 4-byte aligned address (offsets are relative to it)."""
    return u8.ctypes.data % 4 == 0


def _walk(
    words: _Words, starts: IntArray, ends: IntArray, counts: npt.NDArray[np.uint32], owner: IntArray
) -> tuple[IntArray, npt.NDArray[np.uint32], IntArray, IntArray, BoolArray]:
    """Walk `counts[i]` (format, length, body) items from `starts[i]` up to `ends[i]`, for all i at once.

    Returns for every item found: the index i it belongs to, its format, body offset and length; plus a mask of the
    i whose chain ran past its end (malformed).
    """
    cursor = starts.copy()
    bad = np.zeros(starts.size, dtype=bool)
    found_owner, found_format, found_body, found_length = [], [], [], []
    steps = int(min(counts.max(initial=0), MAX_STEPS))
    for step in range(steps):
        active = (counts > step) & ~bad
        if not active.any():
            break
        fits = cursor + 8 <= ends
        bad |= active & ~fits
        active &= fits
        fmt = words.safe(cursor, active)
        length = words.safe(cursor + 4, active).astype(np.int64)
        overflow = active & (cursor + 8 + length > ends)
        bad |= overflow
        active &= ~overflow
        idx = np.flatnonzero(active)
        found_owner.append(owner[idx])
        found_format.append(fmt[idx])
        found_body.append(cursor[idx] + 8)
        found_length.append(length[idx])
        cursor = np.where(active, cursor + 8 + length, cursor)
    bad |= counts > MAX_STEPS
    if not found_owner:
        empty = np.empty(0, dtype=np.int64)
        return empty, np.empty(0, dtype=np.uint32), empty, empty, bad
    return (
        np.concatenate(found_owner),
        np.concatenate(found_format),
        np.concatenate(found_body),
        np.concatenate(found_length),
        bad,
    )


@cache
def _compiled_decoder() -> Callable[..., int] | None:
    """`sluice_sflow_decode` (declared in sluice_native.h), or None (numpy path)."""
    return native.compiled_function("sluice_sflow_decode")


class SflowDecoder:
    """Decodes sFlow v5 flow samples (raw packet headers and sampled IPv4/IPv6 records) into flows."""

    def __init__(self, stats: DecodeStats) -> None:
        self.stats = stats

    def decode(self, u8: ByteArray, offsets: IntArray, lengths: IntArray) -> FlowArray:
        """Decode every datagram at `offsets`; a datagram whose structure overflows is dropped whole."""
        flows = self.decode_compiled(u8, offsets, lengths)
        return flows if flows is not None else self.decode_numpy(u8, offsets, lengths)

    def decode_compiled(self, u8: ByteArray, offsets: IntArray, lengths: IntArray) -> FlowArray | None:
        """`decode` in one C call; None, with nothing counted, where the helper is off or ran out of room or memory.

        A datagram that does not lie inside `u8` is malformed here (the numpy path trusts the caller on that).
        """
        function = _compiled_decoder()
        if function is None:
            return None
        u8 = np.ascontiguousarray(u8, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        n = offsets.size
        capacity = int((np.clip(lengths, 0, u8.size) // MIN_BYTES_PER_RECORD).sum())
        flows = np.empty(capacity, dtype=FLOW_DTYPE)
        counters = np.zeros(len(NATIVE_COUNTERS), dtype=np.int64)
        found = function(
            u8.ctypes.data, u8.size, offsets.ctypes.data, lengths.ctypes.data, n, flows.ctypes.data, capacity,
            counters.ctypes.data,
        )  # fmt: skip
        if found < 0:
            return None
        counted = dict(zip(NATIVE_COUNTERS, counters.tolist(), strict=True))
        # The same counters as the numpy path, down to which ones it touches (a Counter keeps a key added as 0).
        self.stats["sflow_packets"] += n
        self.stats["sflow_flow_samples"] += counted["sflow_flow_samples"]
        if counted["raw_chosen"]:
            self.stats["sflow_non_ip_samples"] += counted["sflow_non_ip_samples"]
        if counted["sflow_flow_samples"]:
            self.stats["records"] += counted["records"]
        self.stats["malformed"] += counted["malformed"]
        return flows[:found]

    def decode_numpy(self, u8: ByteArray, offsets: IntArray, lengths: IntArray) -> FlowArray:
        """`decode` as a vectorised walk (module docstring): the fallback, and the reference for the C decoder."""
        n = offsets.size
        self.stats["sflow_packets"] += n
        ends = offsets + lengths
        ok = lengths >= 28
        words = _Words(u8)
        version = words.safe(offsets, ok)
        agent_type = words.safe(offsets + 4, ok)
        header_len = np.where(agent_type == 2, 40, 28).astype(np.int64)
        ok &= (version == 5) & ((agent_type == 1) | (agent_type == 2)) & (lengths >= header_len)
        nsamples = words.safe(offsets + header_len - 4, ok)
        nsamples = np.where(ok, nsamples, 0).astype(np.uint32)
        owner = np.arange(n, dtype=np.int64)
        s_owner, s_format, s_body, s_len, bad = _walk(words, offsets + header_len, ends, nsamples, owner)
        ok &= ~bad
        flows = self._flow_samples(words, s_owner, s_format, s_body, s_len, ok)
        self.stats["malformed"] += int(n - ok.sum())
        return flows

    def _flow_samples(
        self, words: _Words, owner: IntArray, fmt: npt.NDArray[np.uint32], body: IntArray, length: IntArray,
        datagram_ok: BoolArray,
    ) -> FlowArray:
        plain = (fmt == FLOW_SAMPLE) & (length >= 32)
        expanded = (fmt == EXPANDED_FLOW_SAMPLE) & (length >= 44)
        keep = (plain | expanded) & datagram_ok[owner]
        owner, body, length, expanded = owner[keep], body[keep], length[keep], expanded[keep]
        self.stats["sflow_flow_samples"] += int(owner.size)
        if owner.size == 0:
            return empty_flows()
        u8 = words.u8
        rate = words.at(body + np.where(expanded, 12, 8)).astype(np.uint64)
        nrecords = words.at(body + np.where(expanded, 40, 28))
        first_record = body + np.where(expanded, 44, 32)
        sample_ids = np.arange(owner.size, dtype=np.int64)
        r_sample, r_format, r_body, r_len, bad = _walk(words, first_record, body + length, nrecords, sample_ids)
        if bad.any():
            datagram_ok[owner[bad]] = False
        sample_ok = datagram_ok[owner]
        choice = self._choose_records(r_sample, r_format, r_len, sample_ok)
        r_sample, r_format, r_body = r_sample[choice], r_format[choice], r_body[choice]
        parts = [
            self._raw_headers(words, r_body[r_format == RAW_HEADER], r_len[choice][r_format == RAW_HEADER]),
            self._sampled_ipv4(u8, r_body[r_format == SAMPLED_IPV4]),
            self._sampled_ipv6(u8, r_body[r_format == SAMPLED_IPV6]),
        ]
        order = np.concatenate(
            [r_sample[r_format == RAW_HEADER], r_sample[r_format == SAMPLED_IPV4], r_sample[r_format == SAMPLED_IPV6]]
        )
        flows = np.concatenate([p[0] for p in parts])
        kept = np.concatenate([p[1] for p in parts])
        if not kept.all():
            flows, order = flows[kept], order[kept]
        if order.size > 1 and (order[1:] < order[:-1]).any():
            sorter = np.argsort(order, kind="stable")
            flows, order = flows[sorter], order[sorter]
        sample_rate = np.maximum(rate[order], 1)
        flows["sampling"] = sample_rate
        flows["packets"] = sample_rate
        flows["bytes"] = flows["bytes"] * sample_rate
        self.stats["records"] += int(flows.size)
        return flows

    @staticmethod
    def _choose_records(
        r_sample: IntArray, r_format: npt.NDArray[np.uint32], r_len: IntArray, sample_ok: BoolArray
    ) -> IntArray:
        """One record per sample: the raw header when present, else a sampled IPv4/IPv6 record."""
        usable = (
            ((r_format == RAW_HEADER) & (r_len >= 16))
            | ((r_format == SAMPLED_IPV4) & (r_len >= 32))
            | ((r_format == SAMPLED_IPV6) & (r_len >= 56))
        )
        if r_sample.size:
            usable &= sample_ok[r_sample]
        candidates = np.flatnonzero(usable)
        if candidates.size == 0:
            return candidates
        priority = np.where(r_format[candidates] == RAW_HEADER, 0, 1)
        order = np.lexsort((priority, r_sample[candidates]))
        ranked = candidates[order]
        _, first = np.unique(r_sample[ranked], return_index=True)
        return np.sort(ranked[first])

    def _raw_headers(self, words: _Words, body: IntArray, length: IntArray) -> tuple[FlowArray, BoolArray]:
        """Parse sampled packet headers: L2 (up to two VLAN tags), then L3 and L4 from windows starting at them.

        Fields are read only where the captured header (`visible`) covers them; bytes past it may belong to the
        next record and are never trusted.
        """
        n = body.size
        flows = empty_flows(n)
        if n == 0:
            return flows, np.zeros(0, dtype=bool)
        header_proto = words.at(body)
        frame_length = words.at(body + 4).astype(np.uint64)
        header_length = words.at(body + 12).astype(np.int64)
        ok = (header_length + 16 <= length) & (header_length > 0)
        visible = np.where(ok, np.minimum(header_length, WINDOW), 0)
        u8 = words.u8
        # Windows may reach past the buffer's end for short or garbage headers; pad rather than read outside it.
        if u8.size < int(body.max()) + 16 + 2 * WINDOW:
            u8 = np.concatenate([u8, np.zeros(2 * WINDOW, dtype=np.uint8)])
        start = body + 16
        l2 = gather_rows(u8, start, 22).astype(np.int64)

        ether = header_proto == HEADER_ETHERNET
        ethertype = np.where(ether, (l2[:, 12] << 8) | l2[:, 13], 0)
        l3 = np.where(ether, 14, 0)
        for tag in range(2):
            tagged = ether & np.isin(ethertype, VLAN_ETHERTYPES) & (l3 == 14 + 4 * tag)
            ethertype = np.where(tagged, (l2[:, 16 + 4 * tag] << 8) | l2[:, 17 + 4 * tag], ethertype)
            l3 = np.where(tagged, l3 + 4, l3)
        ethertype = np.where(header_proto == HEADER_IPV4, 0x0800, ethertype)
        ethertype = np.where(header_proto == HEADER_IPV6, 0x86DD, ethertype)

        ip = gather_rows(u8, start + l3, 48)
        version = ip[:, 0] >> 4
        is4 = (ethertype == 0x0800) & (version == 4) & (l3 + 20 <= visible)
        is6 = (ethertype == 0x86DD) & (version == 6) & (l3 + 40 <= visible)
        ok &= is4 | is6
        ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
        frag_word = (ip[:, 6].astype(np.int64) << 8) | ip[:, 7]
        v6_next = ip[:, 6].astype(np.int64)
        v6_frag = is6 & (v6_next == 44) & (l3 + 48 <= visible)
        proto = np.where(is4, ip[:, 9], np.where(v6_frag, ip[:, 40], v6_next))
        frag = np.where(is4, (frag_word & 0x3FFF) != 0, v6_frag)
        v6_offset = ((ip[:, 42].astype(np.int64) << 8) | ip[:, 43]) >> 3
        later_fragment = np.where(is4, (frag_word & 0x1FFF) != 0, v6_frag & (v6_offset != 0))
        l4 = np.where(is4, l3 + ihl, np.where(v6_frag, l3 + 48, l3 + 40))
        has_ports = ((proto == 6) | (proto == 17)) & ~later_fragment & (l4 + 4 <= visible)
        has_flags = (proto == 6) & ~later_fragment & (l4 + 14 <= visible)
        transport = gather_rows(u8, start + np.minimum(l4, WINDOW), 14)

        v4 = np.ascontiguousarray(ip[:, 12:20]).view(">u4").astype(np.uint64)
        v6 = np.ascontiguousarray(ip[:, 8:40]).view(">u8").astype(np.uint64)
        flows["ipv6"] = is6
        flows["src_lo"] = np.where(is4, v4[:, 0] | V4_MAPPED, v6[:, 1])
        flows["src_hi"] = np.where(is4, 0, v6[:, 0])
        flows["dst_lo"] = np.where(is4, v4[:, 1] | V4_MAPPED, v6[:, 3])
        flows["dst_hi"] = np.where(is4, 0, v6[:, 2])
        flows["proto"] = proto
        flows["frag"] = frag
        ports = np.ascontiguousarray(transport[:, 0:4]).view(">u2")
        flows["sport"] = np.where(has_ports, ports[:, 0], 0)
        flows["dport"] = np.where(has_ports, ports[:, 1], 0)
        flows["tcp_flags"] = np.where(has_flags, transport[:, 13], 0)
        flows["bytes"] = frame_length
        self.stats["sflow_non_ip_samples"] += int(n - ok.sum())
        return flows, ok

    def _sampled_ipv4(self, u8: ByteArray, body: IntArray) -> tuple[FlowArray, BoolArray]:
        """sFlow sampled IPv4 record: length, protocol, src, dst, ports, tcp flags, tos (32-bit words)."""
        words = self._words(u8, body, 8)
        flows = empty_flows(body.size)
        flows["bytes"] = words[:, 0]
        flows["proto"] = words[:, 1] & 0xFF
        flows["src_lo"] = words[:, 2].astype(np.uint64) | V4_MAPPED
        flows["dst_lo"] = words[:, 3].astype(np.uint64) | V4_MAPPED
        flows["sport"] = words[:, 4] & 0xFFFF
        flows["dport"] = words[:, 5] & 0xFFFF
        flows["tcp_flags"] = words[:, 6] & 0xFF
        return flows, np.ones(body.size, dtype=bool)

    def _sampled_ipv6(self, u8: ByteArray, body: IntArray) -> tuple[FlowArray, BoolArray]:
        """sFlow sampled IPv6 record: length, protocol, 16-byte src and dst, ports, tcp flags, priority."""
        words = self._words(u8, body, 14).astype(np.uint64)
        flows = empty_flows(body.size)
        flows["bytes"] = words[:, 0]
        flows["proto"] = words[:, 1] & 0xFF
        flows["src_hi"] = (words[:, 2] << np.uint64(32)) | words[:, 3]
        flows["src_lo"] = (words[:, 4] << np.uint64(32)) | words[:, 5]
        flows["dst_hi"] = (words[:, 6] << np.uint64(32)) | words[:, 7]
        flows["dst_lo"] = (words[:, 8] << np.uint64(32)) | words[:, 9]
        flows["sport"] = words[:, 10] & 0xFFFF
        flows["dport"] = words[:, 11] & 0xFFFF
        flows["tcp_flags"] = words[:, 12] & 0xFF
        flows["ipv6"] = 1
        return flows, np.ones(body.size, dtype=bool)

    @staticmethod
    def _words(u8: ByteArray, body: IntArray, count: int) -> npt.NDArray[np.uint32]:
        rows = gather_rows(u8, body, 4 * count)
        return np.ascontiguousarray(rows).view(">u4").reshape(body.size, count).astype(np.uint32)
