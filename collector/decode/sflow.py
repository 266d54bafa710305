"""sFlow v5 datagrams, decoded for a whole batch with numpy and no per-sample Python.

sFlow is a chain of length-prefixed samples and records, so offsets depend on what came before. Instead of walking
each datagram in Python, every step of the walk is taken for all datagrams (then all samples) at once: step k reads
the k-th sample header of every datagram that has one. The number of Python iterations is the largest sample count
in the batch, not the number of samples. Sampled packet headers (Ethernet, optional VLAN tags, IPv4/IPv6, TCP/UDP)
are then parsed as columns of a (samples x 128 bytes) matrix.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from collector.decode.common import ByteArray, DecodeStats, IntArray, be32_safe, gather_rows
from collector.records import FlowArray, V4_MAPPED, empty_flows

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


def _walk(
    u8: ByteArray, starts: IntArray, ends: IntArray, counts: npt.NDArray[np.uint32], owner: IntArray
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
        fmt = be32_safe(u8, cursor, active)
        length = be32_safe(u8, cursor + 4, active).astype(np.int64)
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


class SflowDecoder:
    """Decodes sFlow v5 flow samples (raw packet headers and sampled IPv4/IPv6 records) into flows."""

    def __init__(self, stats: DecodeStats) -> None:
        self.stats = stats

    def decode(self, u8: ByteArray, offsets: IntArray, lengths: IntArray) -> FlowArray:
        """Decode every datagram at `offsets`; a datagram whose structure overflows is dropped whole."""
        n = offsets.size
        self.stats["sflow_packets"] += n
        ends = offsets + lengths
        ok = lengths >= 28
        version = be32_safe(u8, offsets, ok)
        agent_type = be32_safe(u8, offsets + 4, ok)
        header_len = np.where(agent_type == 2, 40, 28).astype(np.int64)
        ok &= (version == 5) & ((agent_type == 1) | (agent_type == 2)) & (lengths >= header_len)
        nsamples = be32_safe(u8, offsets + header_len - 4, ok)
        nsamples = np.where(ok, nsamples, 0).astype(np.uint32)
        owner = np.arange(n, dtype=np.int64)
        s_owner, s_format, s_body, s_len, bad = _walk(u8, offsets + header_len, ends, nsamples, owner)
        ok &= ~bad
        flows = self._flow_samples(u8, s_owner, s_format, s_body, s_len, ok)
        self.stats["malformed"] += int(n - ok.sum())
        return flows

    def _flow_samples(
        self, u8: ByteArray, owner: IntArray, fmt: npt.NDArray[np.uint32], body: IntArray, length: IntArray,
        datagram_ok: BoolArray,
    ) -> FlowArray:
        plain = (fmt == FLOW_SAMPLE) & (length >= 32)
        expanded = (fmt == EXPANDED_FLOW_SAMPLE) & (length >= 44)
        keep = (plain | expanded) & datagram_ok[owner]
        owner, body, length, expanded = owner[keep], body[keep], length[keep], expanded[keep]
        self.stats["sflow_flow_samples"] += int(owner.size)
        if owner.size == 0:
            return empty_flows()
        rate = be32_at_all(u8, body + np.where(expanded, 12, 8)).astype(np.uint64)
        nrecords = be32_at_all(u8, body + np.where(expanded, 40, 28))
        first_record = body + np.where(expanded, 44, 32)
        sample_ids = np.arange(owner.size, dtype=np.int64)
        r_sample, r_format, r_body, r_len, bad = _walk(u8, first_record, body + length, nrecords, sample_ids)
        if bad.any():
            datagram_ok[owner[bad]] = False
        sample_ok = datagram_ok[owner]
        choice = self._choose_records(r_sample, r_format, r_len, sample_ok)
        r_sample, r_format, r_body = r_sample[choice], r_format[choice], r_body[choice]
        parts = [
            self._raw_headers(u8, r_body[r_format == RAW_HEADER], r_len[choice][r_format == RAW_HEADER]),
            self._sampled_ipv4(u8, r_body[r_format == SAMPLED_IPV4]),
            self._sampled_ipv6(u8, r_body[r_format == SAMPLED_IPV6]),
        ]
        order = np.concatenate(
            [r_sample[r_format == RAW_HEADER], r_sample[r_format == SAMPLED_IPV4], r_sample[r_format == SAMPLED_IPV6]]
        )
        flows = np.concatenate([p[0] for p in parts])
        kept = np.concatenate([p[1] for p in parts])
        flows, order = flows[kept], order[kept]
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

    def _raw_headers(self, u8: ByteArray, body: IntArray, length: IntArray) -> tuple[FlowArray, BoolArray]:
        """Parse sampled packet headers column-wise: L2 (with up to two VLAN tags), L3, then ports and flags."""
        n = body.size
        flows = empty_flows(n)
        if n == 0:
            return flows, np.zeros(0, dtype=bool)
        header_proto = be32_at_all(u8, body)
        frame_length = be32_at_all(u8, body + 4).astype(np.uint64)
        header_length = be32_at_all(u8, body + 12).astype(np.int64)
        ok = (header_length + 16 <= length) & (header_length > 0)
        visible = np.where(ok, np.minimum(header_length, WINDOW), 0)
        window = self._window(u8, body + 16, visible)
        rows = np.arange(n)

        def byte(at: IntArray) -> npt.NDArray[np.int64]:
            return window[rows, np.clip(at, 0, WINDOW - 1)].astype(np.int64)

        def short(at: IntArray) -> npt.NDArray[np.int64]:
            return (byte(at) << 8) | byte(at + 1)

        l3 = np.zeros(n, dtype=np.int64)
        ethertype = np.zeros(n, dtype=np.int64)
        ether = header_proto == HEADER_ETHERNET
        ethertype[ether] = short(np.full(n, 12))[ether]
        l3[ether] = 14
        for _ in range(2):
            tagged = ether & np.isin(ethertype, VLAN_ETHERTYPES)
            ethertype = np.where(tagged, short(l3 + 2), ethertype)
            l3 = np.where(tagged, l3 + 4, l3)
        ethertype = np.where(header_proto == HEADER_IPV4, 0x0800, ethertype)
        ethertype = np.where(header_proto == HEADER_IPV6, 0x86DD, ethertype)
        version = byte(l3) >> 4
        is4 = (ethertype == 0x0800) & (version == 4) & (l3 + 20 <= visible)
        is6 = (ethertype == 0x86DD) & (version == 6) & (l3 + 40 <= visible)
        ok &= is4 | is6

        ihl = (byte(l3) & 0x0F) * 4
        frag_word = short(l3 + 6)
        v6_next = byte(l3 + 6)
        v6_frag = is6 & (v6_next == 44) & (l3 + 48 <= visible)
        proto = np.where(is4, byte(l3 + 9), np.where(v6_frag, byte(l3 + 40), v6_next))
        frag = np.where(is4, (frag_word & 0x3FFF) != 0, v6_frag)
        later_fragment = np.where(is4, (frag_word & 0x1FFF) != 0, v6_frag & ((short(l3 + 42) >> 3) != 0))
        l4 = np.where(is4, l3 + ihl, np.where(v6_frag, l3 + 48, l3 + 40))
        has_ports = ((proto == 6) | (proto == 17)) & ~later_fragment & (l4 + 4 <= visible)
        has_flags = (proto == 6) & ~later_fragment & (l4 + 14 <= visible)

        flows["ipv6"] = is6
        flows["src_lo"] = np.where(is4, self._be(window, l3 + 12, 4) | V4_MAPPED, self._be(window, l3 + 16, 8))
        flows["src_hi"] = np.where(is4, 0, self._be(window, l3 + 8, 8))
        flows["dst_lo"] = np.where(is4, self._be(window, l3 + 16, 4) | V4_MAPPED, self._be(window, l3 + 32, 8))
        flows["dst_hi"] = np.where(is4, 0, self._be(window, l3 + 24, 8))
        flows["proto"] = proto
        flows["frag"] = frag
        flows["sport"] = np.where(has_ports, short(l4), 0)
        flows["dport"] = np.where(has_ports, short(l4 + 2), 0)
        flows["tcp_flags"] = np.where(has_flags, byte(l4 + 13), 0)
        flows["bytes"] = frame_length
        self.stats["sflow_non_ip_samples"] += int(n - ok.sum())
        return flows, ok

    @staticmethod
    def _window(u8: ByteArray, starts: IntArray, visible: IntArray) -> npt.NDArray[np.uint8]:
        """The first bytes of each header, zero past its captured length (so nothing outside it is read)."""
        if u8.size < int(starts.max(initial=0)) + WINDOW:
            u8 = np.concatenate([u8, np.zeros(WINDOW, dtype=np.uint8)])
        rows = gather_rows(u8, starts, WINDOW)
        inside = np.arange(WINDOW, dtype=np.int64)[None, :] < visible[:, None]
        return rows * inside

    @staticmethod
    def _be(window: npt.NDArray[np.uint8], at: IntArray, width: int) -> npt.NDArray[np.uint64]:
        rows = np.arange(window.shape[0])
        out = np.zeros(window.shape[0], dtype=np.uint64)
        for i in range(width):
            column = window[rows, np.clip(at + i, 0, WINDOW - 1)].astype(np.uint64)
            out = (out << np.uint64(8)) | column
        return out

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


def be32_at_all(u8: ByteArray, offsets: IntArray) -> npt.NDArray[np.uint32]:
    """Big-endian words at offsets already known to be inside their item."""
    return be32_safe(u8, offsets, np.ones(offsets.size, dtype=bool))
