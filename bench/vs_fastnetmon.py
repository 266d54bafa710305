"""Sluice against FastNetMon (Debian's community edition) on the same generated streams, loopback only.

FastNetMon runs with its own configuration in a temporary folder: NetFlow/IPFIX and sFlow listeners and the
Prometheus endpoint on 127.0.0.1, no BGP, no API, no usage report; its notify script only appends the ban time to a
file in that folder. Each datagram is sent to both collectors. Throughput: records processed (FastNetMon's
Prometheus `total_simple_packets_processed`, Sluice's decoded records) per CPU-second of each process; Sluice is
measured twice at once, with its aggregates in the process and as deployed, in Redis (Redis's CPU counted too). Latency:
first attack datagram to FastNetMon's ban notification and to Sluice's START signal, at 5x a 2,000 pps host
threshold, for sFlow and IPFIX (FastNetMon gets its fastest setting, average_calculation_time = 1).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import detect_latency
import flow_ingest
from _common import size

from netsim.fastnetmon import FastNetMon, ensure_installed
from netsim.flowgen import Scenario, encoder_for

THROUGHPUT_RATE = 300_000
THROUGHPUT_SECONDS = size(3.0, 0.5)
LATENCY_TRIALS = size(3, 1)
THRESHOLD_PPS = 2_000
FORMATS = ("netflow5", "netflow9", "ipfix", "sflow")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

def send_to_both(packets: list[bytes], counts: list[int], addresses: list[tuple[str, int]], rate: float,
                 seconds: float) -> int:  # fmt: skip
    """Send each datagram to every address, paced at `rate` records per second."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, index = 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        while sent < rate * elapsed:
            for address in addresses:
                sock.sendto(packets[index], address)
            sent += counts[index]
            index = (index + 1) % len(packets)
    sock.close()
    return sent


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU time the Redis server has used (its INFO, user plus system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def throughput(fnm: FastNetMon) -> None:
    """Records per CPU-second of both collectors on the same stream, per format.

    Sluice runs twice on the stream: with aggregates in the process, and as deployed, adding them into Redis; the
    second figure counts the Redis server's CPU as well as the collector's.
    """
    client = redis.Redis.from_url(REDIS_URL)
    sluices = {}
    for name, url in (("sluice", None), ("sluice_redis", REDIS_URL)):
        parent, child = mp.Pipe()
        process = mp.Process(target=flow_ingest.collector_process, args=(child, 0, url), daemon=True)
        process.start()
        sluices[name] = (parent, process, parent.recv())
    fnm.pin(0)
    flow_ingest.pin(1)
    addresses = [address for _, _, address in sluices.values()]
    try:
        for fmt in FORMATS:
            packets, counts = flow_ingest.pool(fmt)
            send_to_both(packets[:40], counts[:40], [*addresses, fnm.address(fmt)], 20_000, 0.5)
            time.sleep(1.5)
            for parent, _, _ in sluices.values():
                parent.send("reset")
                parent.recv()
            fnm_records, fnm_cpu, redis_cpu = fnm.processed(), fnm.cpu_seconds(), redis_cpu_seconds(client)
            send_to_both(packets, counts, [*addresses, fnm.address(fmt)], THROUGHPUT_RATE, THROUGHPUT_SECONDS)
            time.sleep(1.5)
            fnm_records, fnm_cpu = fnm.processed() - fnm_records, fnm.cpu_seconds() - fnm_cpu
            redis_cpu = redis_cpu_seconds(client) - redis_cpu
            print(f"METRIC vs_fnm_{fmt}_redis_server_cpu {redis_cpu * 1000:.0f} ms", flush=True)
            fnm_rate = fnm_records / fnm_cpu if fnm_cpu else 0.0
            print(f"METRIC vs_fnm_{fmt}_fastnetmon_per_cpu_s {fnm_rate:.0f} records/cpu-s", flush=True)
            print(f"METRIC vs_fnm_{fmt}_fastnetmon_records {fnm_records:.0f} records", flush=True)
            for name, (parent, _, _) in sluices.items():
                parent.send("report")
                records, _, cpu = parent.recv()
                cpu += redis_cpu if name == "sluice_redis" else 0.0
                rate = records / cpu if cpu else 0.0
                label = "per_cpu_ratio" if name == "sluice" else "redis_per_cpu_ratio"
                print(f"METRIC vs_fnm_{fmt}_{name}_per_cpu_s {rate:.0f} records/cpu-s", flush=True)
                print(f"METRIC vs_fnm_{fmt}_{name}_records {records:.0f} records", flush=True)
                if fnm_rate:
                    print(f"METRIC vs_fnm_{fmt}_{label} {rate / fnm_rate:.2f} x", flush=True)
    finally:
        for parent, process, _ in sluices.values():
            parent.send("stop")
            process.join(5)
        client.close()


def latency(fnm: FastNetMon) -> None:
    """Detection latency of both at 5x the host threshold, for sFlow and IPFIX."""
    parent, child = mp.Pipe()
    process = mp.Process(target=detect_latency.collector_process, args=(child,), daemon=True)
    process.start()
    sluice_address = parent.recv()
    flow_ingest.pin(1)
    attack_rate = THRESHOLD_PPS * 5
    try:
        for fmt in ("sflow", "ipfix"):
            encoder = encoder_for(fmt, sampling=1)
            if hasattr(encoder, "template_every"):
                encoder.template_every = 5
            addresses = [sluice_address, fnm.address(fmt)]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sluice_latencies, fnm_latencies = [], []
            for trial in range(LATENCY_TRIALS):
                target = f"203.0.113.{100 + trial + (10 if fmt == 'ipfix' else 0)}"
                scenario = Scenario("dns_amplification", target=target, attack_start=0, attack_end=1e9, attack_share=1)
                packets = encoder.encode(scenario.records(0.5, 60_000))
                counts = [60_000 // len(packets)] * len(packets)
                time.sleep(0.5 + trial * 0.31)
                first = time.time()
                sluice_at = fnm_at = None
                sent, index, start = 0, 0, time.perf_counter()
                while time.perf_counter() - start < 12 and (sluice_at is None or fnm_at is None):
                    elapsed = time.perf_counter() - start
                    while sent < attack_rate * elapsed:
                        for address in addresses:
                            sock.sendto(packets[index], address)
                        sent += counts[index]
                        index = (index + 1) % len(packets)
                    while parent.poll():
                        phase, when, signal_target = parent.recv()
                        if phase == "start" and signal_target == f"{target}/32":
                            sluice_at = when
                    fnm_at = fnm_at or next((t for t, ip in fnm.bans() if ip == target and t >= first), None)
                    time.sleep(0.001)
                if sluice_at:
                    sluice_latencies.append(sluice_at - first)
                if fnm_at:
                    fnm_latencies.append(fnm_at - first)
            sock.close()
            for name, values in (("sluice", sluice_latencies), ("fastnetmon", fnm_latencies)):
                if values:
                    print(f"METRIC vs_fnm_{fmt}_5x_{name}_latency_p50 {statistics.median(values) * 1000:.0f} ms",
                          flush=True)  # fmt: skip
                else:
                    print(f"# {name} did not detect the {fmt} attack within 12 s", flush=True)
            if sluice_latencies and fnm_latencies:
                ratio = statistics.median(sluice_latencies) / statistics.median(fnm_latencies)
                print(f"METRIC vs_fnm_{fmt}_5x_latency_ratio {ratio:.2f} x", flush=True)
    finally:
        parent.send("stop")
        process.join(5)


def main() -> None:
    """Install if needed, run both comparisons, always stop FastNetMon."""
    binary = ensure_installed()
    if binary is None:
        print("# fastnetmon could not be installed (apt-get failed); nothing to compare", flush=True)
        return
    fnm = FastNetMon(binary)
    try:
        throughput(fnm)
    finally:
        fnm.stop()
    fnm = FastNetMon(binary)  # a fresh one: the throughput stream got every host of the prefix banned
    try:
        latency(fnm)
    finally:
        fnm.stop()


if __name__ == "__main__":
    main()
