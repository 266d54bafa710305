"""Decoding of flow export datagrams (sFlow v5, NetFlow v5/v9, IPFIX) into `FLOW_DTYPE` arrays.

`PacketDecoder` takes a batch of datagrams laid out back to back in one buffer and tells the format of each from
its version field, so one UDP port can receive every format. Malformed datagrams are counted in `stats` and
dropped; an unexpected error in a vectorised decoder makes the batch be decoded packet by packet, so that one bad
datagram never costs the good ones around it. Records an exporter marks as dropped or consumed by the network
(v9/IPFIX forwardingStatus) are no flows; their own flows wait in `take_not_delivered`.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from collector.decode.common import DecodeStats, IntArray
from collector.decode.netflow5 import NetFlow5Decoder
from collector.decode.sflow import SflowDecoder
from collector.decode.templated import TemplatedDecoder
from collector.records import FlowArray, concat_flows, empty_flows

__all__ = ["DecodeStats", "PacketDecoder"]


class PacketDecoder:
    """All four decoders behind one call, with their shared counters and per-exporter default sampling rates."""

    def __init__(
        self,
        default_sampling: Mapping[str, int] | None = None,
        fallback_sampling: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = DecodeStats()
        self._defaults = dict(default_sampling or {})
        self._fallback = fallback_sampling
        self.netflow5 = NetFlow5Decoder(self.stats, self.default_sampling)
        self.sflow = SflowDecoder(self.stats)
        self.templated = TemplatedDecoder(self.stats, self.default_sampling, clock)
        self._not_delivered: list[FlowArray] = []

    def expire(self, idle_seconds: float) -> None:
        """Forget template state of v9/IPFIX domains silent for `idle_seconds`."""
        self.templated.expire(idle_seconds)

    def forget_exporters(self, keep: Collection[str]) -> None:
        """Drop every table entry of exporters not in `keep` (removed from the inventory)."""
        self.templated.forget_exporters(keep)
        self.netflow5.forget_exporters(keep)

    def table_sizes(self) -> dict[str, int]:
        """Entries held in the per-exporter tables (each bounded per exporter)."""
        return {**self.templated.table_sizes(), "v5_sequence_streams": self.netflow5.streams}

    def take_not_delivered(self) -> FlowArray:
        """The flows of the records the network dropped or consumed, decoded since the last call (in batch order)."""
        gone, self._not_delivered = self._not_delivered, []
        return concat_flows(gone)

    def default_sampling(self, exporter: str) -> int:
        """The configured rate for an exporter that does not announce one."""
        return self._defaults.get(exporter, self._fallback)

    def decode(self, packet: bytes, exporter: str = "127.0.0.1") -> FlowArray:
        """Decode one datagram held in its own bytes object (tests, replays)."""
        return self.decode_batch(packet, [0], [len(packet)], [exporter])

    def decode_batch(
        self,
        buf: bytes | bytearray | memoryview | mmap.mmap,
        offsets: Sequence[int] | IntArray,
        lengths: Sequence[int] | IntArray,
        exporters: Sequence[str],
    ) -> FlowArray:
        """Decode datagrams found at `offsets` in `buf` (each `lengths[i]` long, sent by `exporters[i]`)."""
        offs = np.asarray(offsets, dtype=np.int64)
        lens = np.asarray(lengths, dtype=np.int64)
        if offs.size == 0:
            return empty_flows()
        # The whole buffer, not just up to the last datagram's end: a listener's buffer leaves room after every
        # datagram, which spares decoders that read fixed-size windows from padding a copy of the batch.
        u8 = np.frombuffer(buf, dtype=np.uint8)
        if u8.size < int((offs + lens).max()):
            raise ValueError("datagram offsets and lengths run past the end of the buffer")
        self.stats["datagrams"] += int(offs.size)
        try:
            flows = self._decode(u8, memoryview(buf), offs, lens, exporters)
        except Exception:
            self.templated.discard()
            if offs.size == 1:
                self.stats["malformed"] += 1
                self.stats["decoder_errors"] += 1
                return empty_flows()
            parts = [self.decode_batch(buf, offs[i : i + 1], lens[i : i + 1], [exporters[i]]) for i in range(offs.size)]
            return concat_flows(parts)
        self._not_delivered += [gone for gone in self.templated.take_not_delivered() if gone.size]
        return flows

    def _decode(
        self, u8: np.ndarray, view: memoryview, offs: IntArray, lens: IntArray, exporters: Sequence[str]
    ) -> FlowArray:
        long_enough = lens >= 4
        safe = np.where(long_enough, offs, 0)
        head = u8[safe[:, None] + np.arange(4)].astype(np.int64) if u8.size >= 4 else np.zeros((offs.size, 4), dtype=np.int64)
        first = np.where(long_enough, (head[:, 0] << 8) | head[:, 1], -1)
        word = np.where(long_enough, (first << 16) | (head[:, 2] << 8) | head[:, 3], -1)
        is_v5 = first == 5
        is_sflow = word == 5
        is_templated = (first == 9) | (first == 10)
        self.stats["malformed"] += int((~(is_v5 | is_sflow | is_templated)).sum())
        parts: list[FlowArray] = []
        if is_v5.any():
            chosen = np.flatnonzero(is_v5)
            senders = exporters if chosen.size == offs.size else [exporters[i] for i in chosen.tolist()]
            parts.append(self.netflow5.decode(u8, offs[chosen], lens[chosen], senders))
        if is_sflow.any():
            parts.append(self.sflow.decode(u8, offs[is_sflow], lens[is_sflow]))
        if is_templated.any():
            chosen = np.flatnonzero(is_templated)
            senders = exporters if chosen.size == offs.size else [exporters[i] for i in chosen.tolist()]
            self.templated.decode_batch(u8, view, offs[chosen], lens[chosen], senders)
            parts.extend(self.templated.flush(u8))
        parts = [p for p in parts if p.size]
        if not parts:
            return empty_flows()
        return concat_flows(parts)
