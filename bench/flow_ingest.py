"""Flow ingest benchmark: highest zero-loss rate and records per CPU-second, socket to aggregate, per format.

One collector process is pinned to core 0 (UDP socket, decode, prefix match, per-second aggregation), the
generator to core 1 replays pre-encoded datagrams over loopback at a paced rate (sendmmsg batches). A trial is lossless when every
record sent was decoded. Rates are searched by doubling, then bisection. Prints `METRIC` lines.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import size

from collector import FlowCollector, MemoryStore, MonitoredPrefix, RedisStore
from collector.listener import UdpListener
from netsim.flowgen import Scenario, encoder_for
from netsim.flowgen.multisend import MultiSender

FORMATS = ("netflow5", "netflow9", "ipfix", "sflow")
TRIAL_SECONDS = size(2.0, 0.3)
POOL_RECORDS = size(60_000, 3_000)
MAX_TRIALS = size(9, 1)


def pin(core: int) -> None:
    """Pin the calling process to one core when the machine has it."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def collector_process(conn: Connection, core: int, redis_url: str | None = None) -> None:
    """Receive and aggregate until told to stop; answer 'report' with (records, datagrams, cpu seconds).

    Aggregates stay in the process unless `redis_url` is given: then they go to Redis as in production (a fresh
    namespace, removed at the end).
    """
    pin(core)
    prefixes = [MonitoredPrefix("203.0.113.0/24", "bench", host_pps=10**12, prefix_pps=10**12)]
    store = RedisStore.from_url(redis_url, f"bench:flow:{uuid.uuid4().hex}", 30) if redis_url else MemoryStore(5)
    collector = FlowCollector(store=store, emit=lambda s: None, prefixes=lambda: prefixes)
    listener = UdpListener({"all": ("127.0.0.1", 0)})
    conn.send(listener.addresses()["all"])
    cpu_start = time.process_time()
    while True:
        batch = listener.read_batch(0.01)
        if len(batch):
            collector.ingest_batch(batch.buffer, batch.offsets, batch.lengths, batch.exporters)
        collector.tick()
        if conn.poll():
            command = conn.recv()
            if command == "stop":
                break
            if command == "reset":
                collector.stats.clear()
                cpu_start = time.process_time()
                conn.send("ok")
            elif command == "report":
                conn.send((collector.stats["records"], collector.stats["datagrams"], time.process_time() - cpu_start))
    listener.close()
    if isinstance(store, RedisStore):
        keys = list(store.client.scan_iter(f"{store.namespace}:*"))
        if keys:
            store.client.delete(*keys)


def pool(fmt: str) -> tuple[list[bytes], list[int]]:
    """Pre-encoded datagrams of an attack mix and the record count of each."""
    scenario = Scenario("dns_amplification", attack_start=0, attack_end=1e9)
    encoder = encoder_for(fmt, sampling=100)
    packets, counts = [], []
    array = scenario.records(0.5, POOL_RECORDS)
    step = 5000
    for start in range(0, array.size, step):
        chunk = array[start : start + step]
        encoded = encoder.encode(chunk)
        packets += encoded
        per = chunk.size // max(len(encoded), 1)
        counts += [per] * len(encoded)
        counts[-1] += chunk.size - per * len(encoded)
    return packets, counts


def send_paced(packets: list[bytes], counts: list[int], address: tuple[str, int], rate: float, seconds: float) -> int:
    """Send datagrams in order (wrapping) at `rate` records per second for `seconds`; returns records sent.

    `sendmmsg` batches (netsim.flowgen.multisend): one `sendto` per datagram from Python would be slower than the
    collector it measures.
    """
    sender = MultiSender(packets, counts, address)
    try:
        return sender.paced(rate, seconds)
    finally:
        sender.close()


def trial(conn: Connection, packets: list[bytes], counts: list[int], address: tuple[str, int], rate: float) -> tuple[
    int, int, float
]:
    """(sent, decoded, collector cpu seconds) for one paced run."""
    conn.send("reset")
    conn.recv()
    sent = send_paced(packets, counts, address, rate, TRIAL_SECONDS)
    last = -1
    while True:
        time.sleep(0.3)
        conn.send("report")
        decoded, _, cpu = conn.recv()
        if decoded == last or decoded >= sent:
            return sent, decoded, cpu
        last = decoded


def measure(fmt: str, start_rate: float = 200_000) -> tuple[float, float, bool]:
    """(highest lossless rate, records per CPU-second at the busiest lossless trial, whether the generator and not
    the collector set the limit) for one format."""
    packets, counts = pool(fmt)
    parent, child = mp.Pipe()
    process = mp.Process(target=collector_process, args=(child, 0), daemon=True)
    process.start()
    address = parent.recv()
    pin(1)
    send_paced(packets, counts, address, 50_000, 0.3)  # warm up: templates, caches
    best_rate, best_per_cpu, generator_bound = 0.0, 0.0, False
    low, high, rate = 0.0, None, start_rate
    try:
        for _ in range(MAX_TRIALS):
            sent, decoded, cpu = trial(parent, packets, counts, address, rate)
            achieved = sent / TRIAL_SECONDS
            if decoded >= sent:
                low = achieved
                if achieved > best_rate:
                    best_rate, best_per_cpu = achieved, decoded / cpu if cpu > 0 else 0.0
                if achieved < rate * 0.9:
                    generator_bound = True  # the generator itself cannot go faster
                    break
            else:
                high = rate
            rate = rate * 2 if high is None else (low + high) / 2
            if high is not None and high - low < high * 0.1:
                break
    finally:
        parent.send("stop")
        process.join(5)
    return best_rate, best_per_cpu, generator_bound


def main() -> None:
    """Measure every format and print METRIC lines."""
    for fmt in FORMATS:
        rate, per_cpu, generator_bound = measure(fmt, start_rate=100_000 if fmt == "sflow" else 400_000)
        if generator_bound:
            print(f"# {fmt}: the generator could go no faster; the collector lost nothing at its top rate", flush=True)
        print(f"METRIC ingest_{fmt}_zero_loss_rate {rate:.0f} records/s", flush=True)
        print(f"METRIC ingest_{fmt}_per_cpu_s {per_cpu:.0f} records/cpu-s", flush=True)


if __name__ == "__main__":
    main()
