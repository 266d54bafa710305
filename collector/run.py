"""The collector's main loop: sockets in, signals out, until told to stop."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from collector.engine import FlowCollector
from collector.listener import UdpListener
from collector.prefixes import MonitoredPrefix
from collector.signals import AttackSignal
from collector.store import DEFAULT_NAMESPACE, DEFAULT_TTL_SECONDS, AggregateStore, MemoryStore, RedisStore

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05


def run_collector(
    *,
    listen: Mapping[str, tuple[str, int]],
    prefixes: Callable[[], list[MonitoredPrefix]],
    emit: Callable[[AttackSignal], None],
    redis_url: str | None,
    stop_event: threading.Event | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    default_sampling: Mapping[str, int] | None = None,
    flush_interval: float = 0.1,
    merge_delay: float = 0.3,
    prefix_refresh_seconds: float = 10.0,
    detector_name: str = "sluice-flow",
    receive_buffer: int = 32 * 1024 * 1024,
    clock: Callable[[], float] = time.time,
    on_ready: Callable[[dict[str, tuple[str, int]]], None] | None = None,
    store: AggregateStore | None = None,
    reuse_port: bool = False,
    exporters: Callable[[], Mapping[str, int]] | None = None,
) -> Counter[str]:
    """Collect flows on `listen` (name -> (host, port); every socket accepts every format) until `stop_event`.

    `prefixes()` is called at start and every `prefix_refresh_seconds`; `emit` receives start/update/end signals
    (only from the collector holding the detection lease when several share `redis_url`). Without `redis_url`
    aggregates stay in this process. `on_ready` receives the bound addresses (port 0 picks a free port).
    `reuse_port` lets several collector processes bind the same ports (see `UdpListener`).
    `exporters()` (called with `prefixes()`) maps each accepted exporter address to the highest sampling rate it
    may claim; datagrams from other senders are counted and dropped. None accepts every sender.
    Returns the decoder and socket counters, and the final sizes of the per-exporter tables (`table_*`).
    """
    stop_event = stop_event or threading.Event()
    if store is None:
        store = RedisStore.from_url(redis_url, namespace, ttl_seconds) if redis_url else MemoryStore(ttl_seconds)
    collector = FlowCollector(
        store=store,
        emit=emit,
        prefixes=prefixes,
        clock=clock,
        default_sampling=default_sampling,
        flush_interval=flush_interval,
        merge_delay=merge_delay,
        prefix_refresh_seconds=prefix_refresh_seconds,
        detector_name=detector_name,
        exporters=exporters,
    )
    listener = UdpListener(listen, receive_buffer=receive_buffer, reuse_port=reuse_port)
    try:
        if on_ready is not None:
            on_ready(listener.addresses())
        while not stop_event.is_set():
            batch = listener.read_batch(POLL_SECONDS)
            if len(batch):
                collector.ingest_batch(batch.buffer, batch.offsets, batch.lengths, batch.exporters)
            try:
                collector.tick()
            except Exception:
                collector.stats["tick_errors"] += 1
                logger.exception("collector tick failed")
                time.sleep(POLL_SECONDS)
        collector.flush()
    finally:
        listener.close()
    sizes = Counter({f"table_{name}": size for name, size in collector.table_sizes().items()})
    return collector.stats + listener.stats + sizes
