"""Vectorised helpers shared by decoders: gathering fixed-size slices of many packets out of one receive buffer.

A batch of datagrams sits back to back in one buffer. Instead of a numpy call per packet, decoders compute the
offsets of every record in the batch and gather them with one fancy-indexing operation, which is what keeps the
per-record cost low enough for millions of records per second on one core.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]


def gather_rows(u8: ByteArray, starts: IntArray, width: int) -> ByteArray:
    """Rows of `width` bytes starting at each offset; callers guarantee every row lies inside `u8`."""
    if starts.size == 0 or u8.size < width:
        return np.empty((0, width), dtype=np.uint8)
    return sliding_window_view(u8, width)[starts]


def gather_view(u8: ByteArray, starts: IntArray, dtype: np.dtype) -> npt.NDArray[np.void]:
    """Records of a fixed-layout `dtype` at each offset, as a contiguous structured array."""
    rows = gather_rows(u8, starts, dtype.itemsize)
    return np.ascontiguousarray(rows).view(dtype).reshape(starts.size)


def be32_at(u8: ByteArray, offsets: IntArray) -> npt.NDArray[np.uint32]:
    """Big-endian 32-bit words at offsets; callers guarantee offset + 4 <= len(u8)."""
    if offsets.size == 0:
        return np.empty(0, dtype=np.uint32)
    return np.ascontiguousarray(gather_rows(u8, offsets, 4)).view(">u4").reshape(offsets.size).astype(np.uint32)


def be32_safe(u8: ByteArray, offsets: IntArray, valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint32]:
    """Big-endian words where `valid`, zero elsewhere, never reading outside `u8`."""
    safe = np.where(valid, offsets, 0)
    if u8.size < 4:
        return np.zeros(offsets.size, dtype=np.uint32)
    return np.where(valid, be32_at(u8, safe), 0).astype(np.uint32)


def expand_runs(starts: IntArray, counts: IntArray, stride: int | IntArray) -> IntArray:
    """Offsets of `counts[i]` records of `stride` bytes from `starts[i]`, for all i, in order."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    run_first = np.cumsum(counts) - counts
    within = np.arange(total, dtype=np.int64) - np.repeat(run_first, counts)
    strides = np.repeat(np.asarray(stride, dtype=np.int64), counts) if np.ndim(stride) else np.int64(stride)
    return np.repeat(starts.astype(np.int64), counts) + within * strides


class DecodeStats(Counter[str]):
    """Counters of what the decoders saw: packets, records, malformed, unknown templates, sequence gaps.

    ``records`` counts every data record decoded; ``records_dropped_by_network`` those of them an exporter marked as
    dropped or consumed (forwardingStatus), which are left out of the flows because they never reached their target
    (their own flows wait in `PacketDecoder.take_not_delivered`).
    """
