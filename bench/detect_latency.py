"""Detection latency benchmark: first attack datagram sent to START signal emitted, p50 and p99.

A collector process (pinned to core 0, `run_collector` on a loopback port) watches a prefix with a host threshold
of 2,000 pps; the generator (core 1) sends background traffic, then a DNS amplification at 5x or 50x that
threshold starting at a random moment within a second, until the signal arrives; the attack then stops and the
trial ends when the END signal arrives. Prints `METRIC` lines for sFlow and IPFIX.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import socket
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import size

from collector import MonitoredPrefix, run_collector
from collector.signals import AttackSignal
from netsim.flowgen import Scenario, encoder_for

HOST_PPS_THRESHOLD = 2_000
SAMPLING = 10
BACKGROUND_RECORDS_PER_S = 200
TRIALS = size(12, 1)
FORMATS = ("sflow", "ipfix")
MULTIPLES = size((5, 50), (50,))


def pin(core: int) -> None:
    """Pin the calling process to one core when the machine has it."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def collector_process(conn: Connection) -> None:
    """Run the collector; report (phase, time) of each signal through the pipe."""
    pin(0)
    prefix = MonitoredPrefix("203.0.113.0/24", "bench", host_pps=HOST_PPS_THRESHOLD, hold_seconds=1)
    stop = threading.Event()

    def emit(signal: AttackSignal) -> None:
        conn.send((signal.phase.value, time.time(), signal.target))

    def watch_for_stop() -> None:
        conn.recv()
        stop.set()

    threading.Thread(target=watch_for_stop, daemon=True).start()
    run_collector(
        listen={"all": ("127.0.0.1", 0)}, prefixes=lambda: [prefix], emit=emit, redis_url=None, stop_event=stop,
        on_ready=lambda addresses: conn.send(addresses["all"]), merge_delay=0.2, flush_interval=0.05,
    )  # fmt: skip


def encoded(fmt: str, scenario: Scenario, records: int, encoder: object) -> tuple[list[bytes], list[int]]:
    """Datagrams of `records` records and the record count of each."""
    array = scenario.records(0.5, records)
    packets = encoder.encode(array)  # type: ignore[attr-defined]
    per = max(1, array.size // max(len(packets), 1))
    return packets, [per] * len(packets)


class Sender:
    """Paced background plus an optional attack, from pre-encoded pools."""

    def __init__(self, fmt: str, address: tuple[str, int]) -> None:
        encoder = encoder_for(fmt, sampling=SAMPLING)
        if hasattr(encoder, "template_every"):
            encoder.template_every = 10
        self.background = encoded(fmt, Scenario("background"), 20_000, encoder)
        attack = Scenario("dns_amplification", attack_start=0, attack_end=1e9, attack_share=1.0)
        self.attack = encoded(fmt, attack, 60_000, encoder)
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.positions = [0, 0]
        self.sent = [0.0, 0.0]

    def pump(self, pool_index: int, rate: float, since: float, now: float) -> float | None:
        """Send what is due at `rate` records/s since `since`; returns the time of the first datagram sent."""
        packets, counts = (self.background, self.attack)[pool_index]
        first = None
        due = rate * (now - since)
        while self.sent[pool_index] < due:
            index = self.positions[pool_index]
            if first is None:
                first = time.time()
            self.sock.sendto(packets[index], self.address)
            self.sent[pool_index] += counts[index]
            self.positions[pool_index] = (index + 1) % len(packets)
        return first


def run_trials(fmt: str, multiple: int, conn: Connection, address: tuple[str, int], rng: random.Random) -> list[float]:
    """Latencies in seconds for TRIALS attacks."""
    sender = Sender(fmt, address)
    attack_rate = HOST_PPS_THRESHOLD * multiple / SAMPLING
    latencies = []
    start = time.time()
    for _ in range(TRIALS):
        attack_at = time.time() + 1.0 + rng.random()
        attack_since, first_sent, phase = None, None, "background"
        deadline = attack_at + 10
        while time.time() < deadline:
            now = time.time()
            sender.pump(0, BACKGROUND_RECORDS_PER_S, start, now)
            if phase == "attack":
                if attack_since is None:
                    attack_since, sender.sent[1] = now, 0.0
                sent_at = sender.pump(1, attack_rate, attack_since, now)
                first_sent = first_sent or sent_at
            elif phase == "background" and now >= attack_at:
                phase = "attack"
            while conn.poll():
                event, when, _ = conn.recv()
                if event == "start" and first_sent is not None:
                    latencies.append(when - first_sent)
                    phase = "cooldown"
                elif event == "end" and phase == "cooldown":
                    phase = "done"
            if phase == "done":
                break
            time.sleep(0.0005)
    return latencies


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(fmt: str, multiple: int) -> list[float]:
    """Start a collector, run the trials, stop it."""
    parent, child = mp.Pipe()
    process = mp.Process(target=collector_process, args=(child,), daemon=True)
    process.start()
    address = parent.recv()
    pin(1)
    try:
        return run_trials(fmt, multiple, parent, address, random.Random(multiple))
    finally:
        parent.send("stop")
        process.join(5)


def main() -> None:
    """Print p50/p99 detection latency per format and attack size."""
    for fmt in FORMATS:
        for multiple in MULTIPLES:
            latencies = measure(fmt, multiple)
            if not latencies:
                print(f"# {fmt} {multiple}x: no detection", flush=True)
                continue
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            print(f"METRIC detect_latency_{fmt}_{multiple}x_p50 {p50 * 1000:.0f} ms", flush=True)
            print(f"METRIC detect_latency_{fmt}_{multiple}x_p99 {p99 * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
