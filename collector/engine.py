"""One collector's pipeline without sockets: decode, match, aggregate, flush to the store, and (if leading) detect.

Time comes from an injectable clock so that tests drive seconds forward without sleeping. Flows are counted in
the second they arrive (the collector's clock, not the exporter's timestamps: NetFlow active timeouts would smear
an attack's onset over a minute).

Matched flows wait in a per-second buffer and are aggregated once per flush, not once per socket batch: the
fixed cost of aggregation (naming fields, ranking hosts) is then paid ten times a second instead of per batch,
which is what keeps records per CPU-second high when datagrams trickle in.

Records an exporter marks as dropped or consumed by the network (v9/IPFIX forwardingStatus) are no traffic toward
their target and stay out of detection; the ones toward monitored prefixes are buffered beside the flows and become
the ``nd|`` per-host fields of the same seconds (`BatchAggregator.dropped_by_network`).
"""

from __future__ import annotations

import ipaddress
import logging
import mmap
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from collector.aggregate import BatchAggregator
from collector.decode import PacketDecoder
from collector.detect import Detector
from collector.prefixes import MonitoredPrefix, PrefixMatcher
from collector.records import FlowArray, concat_flows, select_flows
from collector.signals import AttackSignal
from collector.store import AggregateStore

logger = logging.getLogger(__name__)

MAX_CATCH_UP_SECONDS = 60
MAX_PENDING_RECORDS = 1_000_000


class FlowCollector:
    """Decoder, aggregator and detector of one collector process, sharing aggregates through `store`."""

    def __init__(
        self,
        *,
        store: AggregateStore,
        emit: Callable[[AttackSignal], None],
        prefixes: Callable[[], list[MonitoredPrefix]],
        clock: Callable[[], float] = time.time,
        default_sampling: Mapping[str, int] | None = None,
        flush_interval: float = 0.1,
        merge_delay: float = 0.3,
        prefix_refresh_seconds: float = 10.0,
        detector_name: str = "sluice-flow",
        owner: str | None = None,
        lead_ttl_seconds: float = 3.0,
        detect: bool = True,
        exporters: Callable[[], Mapping[str, int]] | None = None,
        table_expiry_seconds: float = 600.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.flush_interval = flush_interval
        self.merge_delay = merge_delay
        self.prefix_refresh_seconds = prefix_refresh_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lead_ttl_seconds = lead_ttl_seconds
        self.detect_enabled = detect
        self.decoder = PacketDecoder(default_sampling, clock=clock)
        self.aggregator = BatchAggregator()
        self.detector = Detector(emit, detector_name=detector_name, baselines=store.load_baselines())
        self._prefix_source = prefixes
        # Exporter address -> maximum sampling rate it may claim; None accepts every sender (tests, replays).
        self._exporter_source = exporters
        self._exporters: dict[str, int] | None = None
        self.table_expiry_seconds = table_expiry_seconds
        self._last_expiry = float("-inf")
        self.matcher = PrefixMatcher([])
        self._cidrs: list[str] = []
        self._local: dict[int, dict[str, Counter[str]]] = {}
        self._pending: dict[int, list[tuple[FlowArray, npt.NDArray[np.int64]]]] = {}
        self._pending_dropped: dict[int, list[tuple[FlowArray, npt.NDArray[np.int64]]]] = {}
        self._pending_records = 0
        self._last_flush = float("-inf")
        self._last_refresh = float("-inf")
        self._last_partial = float("-inf")
        self._lead_checked = float("-inf")
        self._leading = False
        self._next_complete: int | None = None
        self.refresh_prefixes(force=True)

    @property
    def stats(self) -> Counter[str]:
        """Decoder counters (datagrams, records, malformed, sequence gaps, templates...)."""
        return self.decoder.stats

    def refresh_prefixes(self, *, force: bool = False) -> None:
        """Ask the caller for the monitored prefixes again; a failing callback keeps the previous list."""
        now = self.clock()
        if not force and now - self._last_refresh < self.prefix_refresh_seconds:
            return
        self._last_refresh = now
        self.refresh_exporters()
        try:
            prefixes = list(self._prefix_source())
        except Exception:
            logger.exception("prefix source failed; keeping %d prefixes", len(self._cidrs))
            return
        self._aggregate_pending()  # buffered prefix indexes refer to the list being replaced
        self.matcher = PrefixMatcher(prefixes)
        self._cidrs = [p.cidr for p in self.matcher.prefixes]
        self.detector.set_prefixes(self.matcher.prefixes)

    def refresh_exporters(self) -> None:
        """Ask the caller for the exporter allow list again; a failing callback keeps the previous one."""
        if self._exporter_source is None:
            return
        try:
            listed = dict(self._exporter_source())
        except Exception:
            logger.exception("exporter source failed; keeping %d exporters", len(self._exporters or {}))
            return
        allowed: dict[str, int] = {}
        for address, limit in listed.items():
            canonical = ipaddress.ip_address(address)
            allowed[str(canonical)] = limit
            if isinstance(canonical, ipaddress.IPv4Address):
                allowed[f"::ffff:{canonical}"] = limit  # as a dual-stack socket reports it
        self._exporters = allowed
        self.decoder.forget_exporters(allowed.keys())

    def ingest_batch(
        self, buf: bytes | bytearray | memoryview | mmap.mmap, offsets: Sequence[int] | npt.NDArray[np.int64], lengths: Sequence[int],
        exporters: Sequence[str], now: float | None = None,
    ) -> int:
        """Decode and aggregate a batch of datagrams received at `now`; returns the number of flow records.

        With an exporter allow list, datagrams from unlisted senders are counted and dropped before decoding (they
        touch no template or sequence state), and records claiming more than their exporter's maximum sampling
        rate are counted and dropped.
        """
        if self._exporters is None:
            flows = self.decoder.decode_batch(buf, offsets, lengths, exporters)
            dropped = self.decoder.take_not_delivered()
        else:
            flows, dropped = self._decode_listed(buf, offsets, lengths, exporters, self._exporters)
        self.ingest_flows(flows, now)
        self.ingest_flows(dropped, now, dropped_by_network=True)
        return int(flows.size)

    def _decode_listed(
        self, buf: bytes | bytearray | memoryview | mmap.mmap, offsets: Sequence[int] | npt.NDArray[np.int64],
        lengths: Sequence[int], exporters: Sequence[str], allowed: Mapping[str, int],
    ) -> tuple[FlowArray, FlowArray]:
        """Decode the datagrams of listed exporters, one exporter at a time so each one's sampling cap applies;
        returns the flows and the flows of records the network dropped (`PacketDecoder.take_not_delivered`)."""
        offs = np.asarray(offsets, dtype=np.int64)
        lens = np.asarray(lengths, dtype=np.int64)
        names = list(exporters)
        senders = set(names)
        parts: list[FlowArray] = []
        dropped: list[FlowArray] = []
        for sender in sorted(senders):
            chosen = np.arange(len(names)) if len(senders) == 1 else np.flatnonzero(np.array(names) == sender)
            limit = allowed.get(sender)
            if limit is None:
                self.stats["unlisted_exporter_datagrams"] += int(chosen.size)
                continue
            flows = self.decoder.decode_batch(buf, offs[chosen], lens[chosen], [sender] * int(chosen.size))
            parts.append(self._within_sampling_limit(flows, limit))
            dropped.append(self._within_sampling_limit(self.decoder.take_not_delivered(), limit))
        return concat_flows([p for p in parts if p.size]), concat_flows([d for d in dropped if d.size])

    def _within_sampling_limit(self, flows: FlowArray, limit: int) -> FlowArray:
        """The flows whose sampling rate is at most the exporter's `limit`; the others are counted and dropped."""
        over = flows["sampling"] > limit
        if not over.any():
            return flows
        self.stats["sampling_over_limit_records"] += int(over.sum())
        return select_flows(flows, ~over)

    def table_sizes(self) -> dict[str, int]:
        """How many entries the decoder's per-exporter tables hold (they are bounded; see `collector.decode`)."""
        return self.decoder.table_sizes()

    def ingest_packets(self, packets: Sequence[bytes], exporter: str = "127.0.0.1", now: float | None = None) -> int:
        """Decode and aggregate datagrams given as separate bytes objects (tests, replays)."""
        if not packets:
            return 0
        lengths = [len(p) for p in packets]
        offsets = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
        return self.ingest_batch(b"".join(packets), offsets, lengths, [exporter] * len(packets), now)

    def ingest_flows(self, flows: FlowArray, now: float | None = None, *, dropped_by_network: bool = False) -> None:
        """Buffer the decoded flows that hit a monitored prefix under the second they arrived in; with
        `dropped_by_network`, flows of records the network dropped (evidence only, never traffic)."""
        if flows.size == 0 or not self._cidrs:
            return
        second = int(self.clock() if now is None else now)
        prefix_index = self.matcher.match(flows)
        matched = prefix_index >= 0
        if not matched.all():
            flows, prefix_index = select_flows(flows, matched), prefix_index[matched]
        if flows.size == 0:
            return
        pending = self._pending_dropped if dropped_by_network else self._pending
        pending.setdefault(second, []).append((flows, prefix_index))
        self._pending_records += int(flows.size)
        if self._pending_records >= MAX_PENDING_RECORDS:
            self._aggregate_pending()

    def _aggregate_pending(self) -> None:
        """Aggregate buffered flows into the local per-second counters."""
        pending, self._pending, self._pending_records = self._pending, {}, 0
        dropped, self._pending_dropped = self._pending_dropped, {}
        for second, parts in pending.items():
            self._add_local(second, self.aggregator.aggregate(*self._joined(parts), self._cidrs))
        for second, parts in dropped.items():
            self._add_local(second, self.aggregator.dropped_by_network(*self._joined(parts), self._cidrs))

    @staticmethod
    def _joined(parts: list[tuple[FlowArray, npt.NDArray[np.int64]]]) -> tuple[FlowArray, npt.NDArray[np.int64]]:
        """One second's buffered flows and their prefix indexes as one array each."""
        flows = concat_flows([p[0] for p in parts])
        return flows, parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])

    def _add_local(self, second: int, increments: dict[str, Counter[str]]) -> None:
        """Add a second's increments per prefix into the local counters."""
        bucket = self._local.setdefault(second, {})
        for cidr, fields in increments.items():
            current = bucket.get(cidr)
            if current is None:
                bucket[cidr] = fields
            else:
                current.update(fields)

    def flush(self) -> None:
        """Aggregate buffered flows, push local counters to the shared store and start afresh."""
        self._aggregate_pending()
        local, self._local = self._local, {}
        for second, deltas in sorted(local.items()):
            if deltas:
                self.store.push(second, deltas)
        self._last_flush = self.clock()

    def tick(self, now: float | None = None) -> None:
        """Periodic work: prefix refresh, flush, detection. Call it often (every loop turn); it rate-limits itself."""
        now = self.clock() if now is None else now
        self.refresh_prefixes()
        if now - self._last_expiry >= self.table_expiry_seconds / 4:
            self._last_expiry = now
            self.decoder.expire(self.table_expiry_seconds)
        if now - self._last_flush >= self.flush_interval or any(s < int(now) for s in (*self._pending, *self._pending_dropped)):
            self.flush()
        if self.detect_enabled:
            self._detect(now)

    def _is_leader(self, now: float) -> bool:
        if now - self._lead_checked >= self.lead_ttl_seconds / 3:
            self._lead_checked = now
            was = self._leading
            self._leading = self.store.try_lead(self.owner, self.lead_ttl_seconds)
            if self._leading and not was:
                self.detector.baselines.update(self.store.load_baselines())
                self._next_complete = None
        return self._leading

    def _detect(self, now: float) -> None:
        if not self._is_leader(now):
            return
        closed_through = int(now - self.merge_delay) - 1
        if self._next_complete is None:
            self._next_complete = closed_through + 1
        self._next_complete = max(self._next_complete, closed_through - MAX_CATCH_UP_SECONDS + 1)
        while self._next_complete <= closed_through:
            second = self._next_complete
            baselines = self.detector.complete(second, self.store.read(second))
            self.store.save_baselines(baselines)
            self._next_complete += 1
        if now - self._last_partial >= self.flush_interval:
            self._last_partial = now
            for second in range(self._next_complete, int(now) + 1):
                candidates = self.detector.partial_candidates(self.store.read_totals(second))
                if candidates:
                    self.detector.partial(second, self.store.read(second, candidates))
