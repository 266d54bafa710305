"""Headers and set chains of many NetFlow v9 / IPFIX packets, walked with numpy for a whole batch at once.

Walking sets one packet at a time in Python costs several microseconds per datagram, more than converting its
records. Here step k reads the k-th set header of every packet that still has one, so the number of Python
iterations is the largest set count in the batch (two or three for real exporters), not the number of packets.
The walk repeats exactly the checks `TemplatedDecoder` makes packet by packet; a packet it cannot vouch for
(malformed, too many sets) is flagged so the caller hands it to the per-packet path, which decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.decode.common import ByteArray, IntArray

BoolArray = npt.NDArray[np.bool_]

MAX_SETS = 64
V9_HEADER_LENGTH = 20
IPFIX_HEADER_LENGTH = 16


@dataclass
class SetWalk:
    """Per packet: header fields and whether the walk vouches for it; per set (ordered by packet): where it lies.

    A packet neither `walked` nor `overflow` is malformed exactly where the per-packet path would raise; an
    `overflow` packet has more sets than the walk follows and may be valid.
    """

    version: IntArray
    sequence: IntArray
    domain: IntArray
    walked: BoolArray
    overflow: BoolArray
    set_owner: IntArray
    set_id: IntArray
    set_start: IntArray
    set_end: IntArray


def _be(u8: ByteArray, offsets: IntArray, width: int, valid: BoolArray) -> IntArray:
    """Big-endian unsigned integers of `width` bytes where `valid`, zero elsewhere, never reading outside `u8`."""
    safe = np.where(valid, offsets, 0)
    out = np.zeros(offsets.size, dtype=np.int64)
    for k in range(width):
        out = (out << 8) | u8[np.minimum(safe + k, u8.size - 1)]
    return np.where(valid, out, 0)


def walk_sets(u8: ByteArray, offsets: IntArray, lengths: IntArray) -> SetWalk:
    """Parse the headers and walk the set chains of the v9/IPFIX packets at `offsets` in `u8`."""
    ok = lengths >= 4
    version = _be(u8, offsets, 2, ok)
    v9 = version == 9
    ok &= np.where(v9, lengths >= V9_HEADER_LENGTH, lengths >= IPFIX_HEADER_LENGTH)
    message_length = _be(u8, offsets + 2, 2, ok & ~v9)
    ok &= v9 | ((message_length >= IPFIX_HEADER_LENGTH) & (message_length <= lengths))
    sequence = _be(u8, offsets + np.where(v9, 12, 8), 4, ok)
    domain = _be(u8, offsets + np.where(v9, 16, 12), 4, ok)
    cursor = offsets + np.where(v9, V9_HEADER_LENGTH, IPFIX_HEADER_LENGTH)
    end = offsets + np.where(v9, lengths, message_length)
    owners, ids, starts, ends = [], [], [], []
    for _ in range(MAX_SETS):
        active = ok & (cursor + 4 <= end)
        if not active.any():
            break
        set_id = _be(u8, cursor, 2, active)
        set_length = _be(u8, cursor + 2, 2, active)
        broken = active & ((set_length < 4) | (cursor + set_length > end))
        ok &= ~broken
        active &= ~broken
        index = np.flatnonzero(active)
        owners.append(index)
        ids.append(set_id[index])
        starts.append(cursor[index] + 4)
        ends.append(cursor[index] + set_length[index])
        cursor = np.where(active, cursor + set_length, cursor)
    overflow = ok & (cursor + 4 <= end)
    ok &= ~overflow
    if owners:
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")
        set_owner, set_id = owner[order], np.concatenate(ids)[order]
        set_start, set_end = np.concatenate(starts)[order], np.concatenate(ends)[order]
    else:
        set_owner = set_id = set_start = set_end = np.empty(0, dtype=np.int64)
    return SetWalk(version, sequence, domain, ok, overflow, set_owner, set_id, set_start, set_end)


def sequence_gaps(
    domain: IntArray, version: IntArray, sequence: IntArray, records: IntArray, expected_first: dict[int, int]
) -> tuple[int, dict[int, int]]:
    """Count sequence gaps of packets in arrival order, per domain code; returns (gaps, next expected per domain).

    v9 sequence numbers count packets, IPFIX ones count data records (`records` -1: unknown, nothing expected
    next). `expected_first` holds what each domain expected before the batch (absent: nothing). The result maps
    each domain to what it expects after the batch, -1 for nothing.
    """
    if domain.size == 0:
        return 0, {}
    order = np.argsort(domain, kind="stable")
    dom, seq, rec = domain[order], sequence[order], records[order]
    following = np.where(
        version[order] == 9, (seq + 1) & 0xFFFF_FFFF, np.where(rec >= 0, (seq + rec) & 0xFFFF_FFFF, -1)
    )
    first = np.ones(dom.size, dtype=bool)
    first[1:] = dom[1:] != dom[:-1]
    expected = np.empty(dom.size, dtype=np.int64)
    expected[1:] = following[:-1]
    firsts = np.flatnonzero(first)
    expected[firsts] = [expected_first.get(code, -1) for code in dom[firsts].tolist()]
    gaps = int(((expected >= 0) & (seq != expected)).sum())
    last = np.ones(dom.size, dtype=bool)
    last[:-1] = first[1:]
    lasts = np.flatnonzero(last)
    return gaps, dict(zip(dom[lasts].tolist(), following[lasts].tolist()))
