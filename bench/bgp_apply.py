"""How fast Sluice's BGP speaker driver gets a route from a call into a router's RIB, and what it costs.

Starts one Sluice ExaBGP (127.0.63.1) and one BIRD receiver (127.0.63.2) on loopback, then measures:
- announce-to-visible latency of single routes (announce one, poll BIRD until it has it), p50 and p99;
- bulk time for 10,000 unicast and 1,000 FlowSpec routes through the driver (sync, journal and all) until BIRD
  holds them all, against the same routes written as raw ExaBGP API commands without the driver's bookkeeping.
Prints `METRIC <name> <value> <unit>` lines. Run from the repository root: .venv/bin/python bench/bgp_apply.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import size

from devices.drivers.base import FlowSpecRule, UnicastRoute
from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker
from devices.drivers.bgp.commands import announce_command, withdraw_command
from netsim.bgplab import BirdPeer, BirdRouter
from netsim.polling import wait_for

SPEAKER, ROUTER = "127.0.63.1", "127.0.63.2"
LOCAL_AS, ROUTER_AS, PORT = 65300, 65301, 11963
LATENCY_SAMPLES = size(200, 5)
BULK_UNICAST = size(10_000, 50)
BULK_FLOW = size(1_000, 10)
Route = UnicastRoute | FlowSpecRule


def metric(name: str, value: float, unit: str) -> None:
    print(f"METRIC {name} {value:.3g} {unit}", flush=True)


def unicast_routes(count: int, second_octet: int) -> list[Route]:
    return [
        UnicastRoute(f"10.{second_octet}.{i // 256}.{i % 256}/32", "192.0.2.1", ("65300:100", "65535:666"))
        for i in range(count)
    ]


def flow_rules(count: int) -> list[Route]:
    return [
        FlowSpecRule(
            f"10.99.{i // 256}.{i % 256}/32", "rate-limit", protocols=((17, 17),), source_ports=((53, 53),),
            rate_bps=8_000_000,
        )
        for i in range(count)
    ]


def measure_latency(speaker: ExaBgpSpeaker, router: BirdRouter) -> list[float]:
    """Milliseconds from announce() to the prefix in BIRD's table, one route at a time."""
    samples = []
    for route in unicast_routes(LATENCY_SAMPLES, 98):
        assert isinstance(route, UnicastRoute)
        query = f"show route {route.prefix} table master4"
        started = time.perf_counter()
        speaker.announce(route)
        wait_for(lambda query=query: "10.98." in router.cli(query), timeout=10, interval=0.0002)
        samples.append((time.perf_counter() - started) * 1000)
    speaker.sync(set())
    wait_for(lambda: router.route_count("master4") == 0, timeout=60, interval=0.01)
    return samples


def timed_until(router: BirdRouter, table: str, count: int, action: Callable[[], object]) -> float:
    """Seconds from the start of `action` until `table` holds `count` routes."""
    started = time.perf_counter()
    action()
    wait_for(lambda: router.route_count(table) == count, timeout=300, interval=0.01, what=f"{count} in {table}")
    return time.perf_counter() - started


def raw_commands(routes: list[Route], verb: str) -> list[str]:
    if verb == "announce":
        return [announce_command(route, LOCAL_AS) for route in routes]
    return [withdraw_command(route) for route in routes]


def bulk(speaker: ExaBgpSpeaker, router: BirdRouter, routes: list[Route], table: str) -> tuple[float, float]:
    """(driver seconds, raw seconds) for the same routes, each from an empty table."""
    raw = timed_until(router, table, len(routes), lambda: speaker.send_raw(raw_commands(routes, "announce")))
    speaker.send_raw(raw_commands(routes, "withdraw"))
    wait_for(lambda: router.route_count(table) == 0, timeout=300, interval=0.01)
    driver = timed_until(router, table, len(routes), lambda: speaker.sync(set(routes)))
    speaker.sync(set())
    wait_for(lambda: router.route_count(table) == 0, timeout=300, interval=0.01)
    return driver, raw


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sluice-bgp-bench-") as tmp:
        router = BirdRouter(tmp, "r1", ROUTER, ROUTER_AS, [BirdPeer(SPEAKER, LOCAL_AS)], port=PORT)
        process = ExaBgpProcess(
            Path(tmp) / "exabgp", SPEAKER, LOCAL_AS, SPEAKER, [BgpNeighborConfig(ROUTER, ROUTER_AS, port=PORT)]
        )
        router.start()
        process.start()
        try:
            router.wait_established()
            speaker = ExaBgpSpeaker(process.workdir)
            samples = sorted(measure_latency(speaker, router))
            metric("bgp_visible_p50", statistics.median(samples), "ms")
            metric("bgp_visible_p99", samples[max(0, int(len(samples) * 0.99) - 1)], "ms")

            driver, raw = bulk(speaker, router, unicast_routes(BULK_UNICAST, 97), "master4")
            metric("bgp_bulk_unicast_10k", driver, "s")
            metric("bgp_raw_unicast_10k", raw, "s")
            metric("bgp_bulk_ratio", driver / raw, "x")

            driver, raw = bulk(speaker, router, flow_rules(BULK_FLOW), "flowtab4")
            metric("bgp_bulk_flowspec_1k", driver, "s")
            metric("bgp_raw_flowspec_1k", raw, "s")
            metric("bgp_bulk_flowspec_ratio", driver / raw, "x")
        finally:
            process.stop()
            router.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
