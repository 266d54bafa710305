"""NetFlow v5: fixed 24-byte header and 48-byte records, decoded for a whole batch of packets at once.

Headers are checked, sequence numbers tracked and sampling rates chosen with numpy for the whole batch; the records
are then expanded by the compiled helper (`collector/native/netflow5.c`) in one call, or by a numpy gather where
the helper is unavailable. Both give the same flows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from functools import cache

import numpy as np
import numpy.typing as npt

from collector import native
from collector.decode.common import ByteArray, DecodeStats, IntArray, expand_runs, gather_view
from collector.decode.setwalk import exporter_ids
from collector.records import FLOW_DTYPE, FlowArray, empty_flows, v4_to_lo

# Sequence state per (exporter, engine type, engine id); an exporter has a handful, forged datagrams may claim 65536.
MAX_SEQUENCE_STREAMS = 4096

HEADER_DTYPE = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("sys_uptime", ">u4"),
        ("unix_secs", ">u4"),
        ("unix_nsecs", ">u4"),
        ("flow_sequence", ">u4"),
        ("engine_type", "u1"),
        ("engine_id", "u1"),
        ("sampling_interval", ">u2"),
    ]
)
RECORD_DTYPE = np.dtype(
    [
        ("srcaddr", ">u4"),
        ("dstaddr", ">u4"),
        ("nexthop", ">u4"),
        ("input", ">u2"),
        ("output", ">u2"),
        ("dPkts", ">u4"),
        ("dOctets", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("srcport", ">u2"),
        ("dstport", ">u2"),
        ("pad1", "u1"),
        ("tcp_flags", "u1"),
        ("prot", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
HEADER_LEN = HEADER_DTYPE.itemsize
RECORD_LEN = RECORD_DTYPE.itemsize
MAX_RECORDS = 30


@cache
def _compiled_records() -> Callable[..., int] | None:
    """`sluice_nf5_records` (declared in sluice_native.h), or None (numpy path)."""
    return native.compiled_function("sluice_nf5_records")


class NetFlow5Decoder:
    """Decodes NetFlow v5 batches and tracks flow sequence numbers per (exporter, engine) to count losses."""

    def __init__(self, stats: DecodeStats, default_sampling: Callable[[str], int], *, use_native: bool = True) -> None:
        self.stats = stats
        self.use_native = use_native
        self.default_sampling = default_sampling
        self._next_sequence: dict[tuple[str, int, int], int] = {}

    def decode(self, u8: ByteArray, offsets: IntArray, lengths: IntArray, exporters: Sequence[str]) -> FlowArray:
        """Decode every v5 packet at `offsets`; packets whose header and length disagree are counted and dropped."""
        self.stats["netflow5_packets"] += int(offsets.size)
        big_enough = lengths >= HEADER_LEN
        names, exporter_index = exporter_ids(exporters)
        header = gather_view(u8, offsets[big_enough], HEADER_DTYPE)
        offsets, lengths, exporter_index = offsets[big_enough], lengths[big_enough], exporter_index[big_enough]
        counts = header["count"].astype(np.int64)
        valid = (header["version"] == 5) & (counts >= 1) & (counts <= MAX_RECORDS)
        valid &= lengths >= HEADER_LEN + counts * RECORD_LEN
        self.stats["malformed"] += int(big_enough.size - valid.sum())
        if not valid.any():
            return empty_flows()
        header, offsets, counts, exporter_index = header[valid], offsets[valid], counts[valid], exporter_index[valid]
        self._track_sequences(header, names, exporter_index)
        sampling = self._sampling(header, names, exporter_index)
        flows = self.records_compiled(u8, offsets, counts, sampling) if self.use_native else None
        if flows is None:
            flows = self.records_numpy(u8, offsets, counts, sampling)
        self.stats["records"] += int(flows.size)
        return flows

    @staticmethod
    def records_compiled(
        u8: ByteArray, offsets: IntArray, counts: IntArray, sampling: npt.NDArray[np.uint64]
    ) -> FlowArray | None:
        """The records of valid packets in one C call; None where the helper is off or refuses the input."""
        function = _compiled_records()
        if function is None:
            return None
        u8 = np.ascontiguousarray(u8, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        counts = np.ascontiguousarray(counts, dtype=np.int64)
        sampling = np.ascontiguousarray(sampling, dtype=np.uint64)
        capacity = int(counts.sum())
        flows = np.empty(capacity, dtype=FLOW_DTYPE)
        written = function(u8.ctypes.data, u8.size, offsets.ctypes.data, counts.ctypes.data, sampling.ctypes.data,
                           offsets.size, flows.ctypes.data, capacity)  # fmt: skip
        return flows if written == capacity else None

    @staticmethod
    def records_numpy(
        u8: ByteArray, offsets: IntArray, counts: IntArray, sampling: npt.NDArray[np.uint64]
    ) -> FlowArray:
        """The records of valid packets with a numpy gather and column conversions."""
        records = gather_view(u8, expand_runs(offsets + HEADER_LEN, counts, RECORD_LEN), RECORD_DTYPE)
        per_record_sampling = np.repeat(sampling, counts)
        flows = empty_flows(records.size)
        flows["src_lo"] = v4_to_lo(records["srcaddr"])
        flows["dst_lo"] = v4_to_lo(records["dstaddr"])
        flows["bytes"] = records["dOctets"].astype(np.uint64) * per_record_sampling
        flows["packets"] = records["dPkts"].astype(np.uint64) * per_record_sampling
        flows["sampling"] = per_record_sampling
        flows["sport"] = records["srcport"]
        flows["dport"] = records["dstport"]
        flows["proto"] = records["prot"]
        flows["tcp_flags"] = records["tcp_flags"]
        return flows

    def _sampling(self, header: np.ndarray, names: list[str], exporter_index: IntArray) -> npt.NDArray[np.uint64]:
        """The header's sampling interval (low 14 bits), or the exporter's configured default when it says 0."""
        interval = (header["sampling_interval"] & 0x3FFF).astype(np.uint64)
        if (interval == 0).any():
            defaults = np.array([max(1, self.default_sampling(name)) for name in names], dtype=np.uint64)
            interval = np.where(interval == 0, defaults[exporter_index], interval)
        return interval

    def _track_sequences(self, header: np.ndarray, names: list[str], exporter_index: IntArray) -> None:
        """Count flows lost between packets: v5 sequence numbers count flows, not packets.

        Vectorised per stream (exporter, engine type, engine id): within a stream each packet expects the previous
        one's sequence plus its record count; only the first packet of each stream looks at the saved state.
        """
        code = (exporter_index << 16) | (header["engine_type"].astype(np.int64) << 8) | header["engine_id"]
        order = np.argsort(code, kind="stable")
        code = code[order]
        seq = header["flow_sequence"].astype(np.int64)[order]
        following = (seq + header["count"].astype(np.int64)[order]) & 0xFFFF_FFFF
        first = np.ones(code.size, dtype=bool)
        first[1:] = code[1:] != code[:-1]
        firsts, lasts = np.flatnonzero(first), np.append(np.flatnonzero(first)[1:] - 1, code.size - 1)
        keys = [(names[c >> 16], (c >> 8) & 0xFF, c & 0xFF) for c in code[firsts].tolist()]
        expected = np.empty(code.size, dtype=np.int64)
        expected[1:] = following[:-1]
        expected[firsts] = [self._next_sequence.get(key, -1) for key in keys]
        gap = (expected >= 0) & (seq != expected)
        if gap.any():
            self.stats["sequence_gaps"] += int(gap.sum())
            ahead = gap & (seq > expected)
            self.stats["records_lost"] += int(((seq[ahead] - expected[ahead]) & 0xFFFF_FFFF).sum())
        self._next_sequence.update(zip(keys, following[lasts].tolist(), strict=True))
        excess = len(self._next_sequence) - MAX_SEQUENCE_STREAMS
        if excess > 0:
            # Forged engine ids must not grow the table: the streams seen first go (they resume with one gap).
            for key in list(itertools.islice(self._next_sequence, excess)):
                del self._next_sequence[key]
            self.stats["sequence_streams_evicted"] += excess

    def forget_exporters(self, keep: Collection[str]) -> None:
        """Drop the sequence state of exporters no longer listed."""
        for key in [key for key in self._next_sequence if key[0] not in keep]:
            del self._next_sequence[key]

    @property
    def streams(self) -> int:
        """Sequence streams (exporter, engine type, engine id) whose next number is remembered."""
        return len(self._next_sequence)
