"""The emulated data plane: what FlowSpec rules and diversions do to traffic, what routers and centers count, and
the delivered traffic reaching a real collector at the delivered rates."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from collector import MemoryStore, MonitoredPrefix, run_collector
from devices.drivers.base import FlowSpecRule, UnicastRoute
from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker
from devices.drivers.junos import junos_term_name
from netsim.bgplab import BirdFlow, BirdPeer, BirdRouter, decode_flow_actions, parse_flow_match
from netsim.dataplane import (
    DataPlane,
    DataPlaneError,
    EdgeRouter,
    ScrubbingSite,
    Stream,
    dataplane_request,
    flow_route_from_bird,
)
from netsim.flowgen import encoder_for
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tests.support.processes import free_port

WAIT_LIMIT = 30.0  # only keeps a broken build from hanging; never what a test checks
FILTER = "__flowspec_default_inet__"
DISCARD_DNS = (
    "set routing-options flow route sluice-dns match destination 203.0.113.10/32\n"
    "set routing-options flow route sluice-dns match protocol 17\n"
    "set routing-options flow route sluice-dns match source-port 53\n"
    "set routing-options flow route sluice-dns then discard\n"
)
LIMIT_SYN = (
    "set routing-options flow route sluice-syn match destination 203.0.113.11/32\n"
    "set routing-options flow route sluice-syn match protocol 6\n"
    "set routing-options flow route sluice-syn match tcp-flags syn\n"
    "set routing-options flow route sluice-syn then rate-limit 2000000\n"
)
DIVERT = (
    "set routing-instances SLUICE-DIVERT instance-type virtual-router\n"
    "set routing-instances SLUICE-DIVERT routing-options static route 203.0.113.128/25 next-hop 192.0.2.50\n"
)
DNS_TERM = (FILTER, "203.0.113.10,*,proto=17,srcport=53")
SYN_TERM = (FILTER, "203.0.113.11,*,proto=6,tcp-flag:02")


@pytest.fixture
def router() -> JunosEmulator:
    """An emulated router's state; forwarding needs no NETCONF session, so it is not started."""
    return JunosEmulator(hostname="edge1")


def plane_with(router: JunosEmulator, config: str) -> DataPlane:
    router.load_committed(config)
    return DataPlane([EdgeRouter("edge1", router)], [ScrubbingSite("fra", "192.0.2.50", redirect_target="65000:666")])


def stream(name: str, destination: str, *, bps: int = 8_000_000, protocol: int = 17, source: str = "198.51.100.7",
           **fields: Any) -> Stream:
    """A stream entering at edge1 with 1,000-byte packets: 8 Mbit/s is 1,000 packets/s."""
    return Stream(name, source, destination, protocol, bps, "edge1", packet_size=1000, **fields)


def figures(plane: DataPlane, name: str) -> tuple[float, float]:
    entry = next(s for s in plane.state()["streams"] if s["name"] == name)
    return entry["offered_bps"], entry["delivered_bps"]


def test_discard_drops_all_matching_traffic_and_counts_it(router: JunosEmulator) -> None:
    plane = plane_with(router, DISCARD_DNS)
    plane.add_stream(stream("amplified", "203.0.113.10", source="198.51.100.0/24", source_port=53, attack=True))
    plane.tick(1.0)
    plane.tick(1.0)
    assert figures(plane, "amplified") == (8_000_000, 0)
    counter = router.flow_counters()[DNS_TERM]
    assert (counter.packets, counter.bytes, counter.policed_packets) == (2000, 2_000_000, 0)


def test_rate_limit_passes_its_rate_and_the_policer_counts_the_excess(router: JunosEmulator) -> None:
    plane = plane_with(router, LIMIT_SYN)
    plane.add_stream(stream("syn-flood", "203.0.113.11", protocol=6, tcp_flags=0x02, destination_port=443))
    plane.tick(1.0)
    assert figures(plane, "syn-flood") == (8_000_000, 2_000_000)
    counter = router.flow_counters()[SYN_TERM]
    assert (counter.packets, counter.bytes) == (250, 250_000)
    assert (counter.policed_packets, counter.policed_bytes) == (750, 750_000)


def test_traffic_no_rule_matches_is_untouched_and_uncounted(router: JunosEmulator) -> None:
    plane = plane_with(router, DISCARD_DNS + LIMIT_SYN)
    plane.add_stream(stream("https", "203.0.113.10", protocol=6, destination_port=443))
    plane.add_stream(stream("ack", "203.0.113.11", protocol=6, tcp_flags=0x10))
    plane.add_stream(stream("other-host", "203.0.113.12", source_port=53))
    plane.tick(1.0)
    for name in ("https", "ack", "other-host"):
        assert figures(plane, name) == (8_000_000, 8_000_000)
    assert {key: c.packets for key, c in router.flow_counters().items()} == {DNS_TERM: 0, SYN_TERM: 0}


def test_diversion_reaches_the_center_which_drops_the_attack_and_returns_the_clean_part(router: JunosEmulator) -> None:
    plane = plane_with(router, DIVERT)
    plane.add_stream(stream("flood", "203.0.113.200", bps=16_000_000, attack=True))
    plane.add_stream(stream("customers", "203.0.113.201", protocol=6, destination_port=443))
    plane.add_stream(stream("outside", "203.0.113.5", attack=True))
    plane.tick(2.0)
    prefix = plane.state()["centers"]["fra"]["203.0.113.128/25"]
    assert (prefix["received_bps"], prefix["dropped_bps"], prefix["clean_bps"]) == (24_000_000, 16_000_000, 8_000_000)
    assert (prefix["received_pps"], prefix["dropped_pps"], prefix["clean_pps"]) == (3000, 2000, 1000)
    assert (prefix["received_packets"], prefix["clean_bytes"]) == (6000, 2_000_000)
    assert figures(plane, "flood") == (16_000_000, 0)
    assert figures(plane, "customers") == (8_000_000, 8_000_000)
    assert figures(plane, "outside") == (8_000_000, 8_000_000)


def test_a_redirect_rule_sends_matching_traffic_to_the_center_of_its_route_target(router: JunosEmulator) -> None:
    plane = plane_with(router, (
        "set routing-options flow route sluice-r match destination 203.0.113.64/26\n"
        "set routing-options flow route sluice-r match protocol 17\n"
        "set routing-options flow route sluice-r then routing-instance target:65000:666\n"))
    plane.add_stream(stream("udp-flood", "203.0.113.70", attack=True))
    plane.add_stream(stream("web", "203.0.113.70", protocol=6))
    plane.tick(1.0)
    assert plane.state()["centers"]["fra"]["203.0.113.64/26"]["dropped_bps"] == 8_000_000
    assert figures(plane, "udp-flood") == (8_000_000, 0)
    assert figures(plane, "web") == (8_000_000, 8_000_000)
    assert router.flow_counters()[(FILTER, "203.0.113.64/26,*,proto=17")].packets == 1000


def test_a_removed_rule_loses_its_counter_and_a_reinstalled_one_counts_from_zero(router: JunosEmulator) -> None:
    plane = plane_with(router, DISCARD_DNS + LIMIT_SYN)
    plane.add_stream(stream("amplified", "203.0.113.10", source_port=53))
    plane.tick(1.0)
    assert router.flow_counters()[DNS_TERM].packets == 1000
    router.load_committed(LIMIT_SYN)
    assert DNS_TERM not in router.flow_counters()
    plane.tick(1.0)
    assert figures(plane, "amplified") == (8_000_000, 8_000_000)
    router.load_committed(DISCARD_DNS + LIMIT_SYN)
    assert router.flow_counters()[DNS_TERM].packets == 0
    plane.tick(1.0)
    assert router.flow_counters()[DNS_TERM].packets == 1000


def test_flowspec_routes_learned_over_bgp_filter_and_count_like_configured_ones(router: JunosEmulator) -> None:
    """BIRD shows RFC 8955 traffic-rate in bytes per second (here 250,000 B/s); the router limits to 2 Mbit/s."""
    rate = struct.unpack("!I", struct.pack("!f", 250_000.0))[0]
    match = "flow4 { dst 203.0.113.11/32; proto 6; dport 80,443; }"
    flow = BirdFlow(match, parse_flow_match(match), actions=decode_flow_actions([f"(generic, 0x80060000, {rate:#x})"]))
    route = flow_route_from_bird(flow)
    assert route is not None and route.rate_bps == 2_000_000
    assert route.policer_name == "2000K_203.0.113.11,*,proto=6,dstport=80,=443"
    plane = plane_with(router, "")
    router.learn_flow_routes([route])
    plane.add_stream(stream("web", "203.0.113.11", protocol=6, destination_port=443))
    plane.tick(1.0)
    assert figures(plane, "web") == (8_000_000, 2_000_000)
    assert router.flow_counters()[(FILTER, route.term_name)].policed_packets == 750


@pytest.mark.parametrize(("component", "field", "bits"), [
    # As BIRD prints what Sluice's speaker announces (seen in the lab test below).
    ("tcp flags !0x0/0x10 || !0x0/0x2", "tcp_flags", (0x02, 0x10)),
    ("fragment !!first_fragment || !!is_fragment", "fragments", (0x02, 0x04)),
    ("tcp flags 0x2/0x2", "tcp_flags", (0x02,)),
    # Tests this model cannot hold: the route is left out rather than applied wrongly.
    ("tcp flags 0x0/0x2", "tcp_flags", None),
    ("tcp flags !0x0/0x2 && !0x0/0x10", "tcp_flags", None),
    ("fragment !is_fragment", "fragments", None),
])
def test_flag_components_as_bird_prints_them(component: str, field: str, bits: tuple[int, ...] | None) -> None:
    match = f"flow4 {{ dst 203.0.113.12/32; {component}; }}"
    route = flow_route_from_bird(BirdFlow(match, parse_flow_match(match), actions=(("discard", None),)))
    assert (getattr(route, field) if route else None) == bits


def test_control_socket_adds_lists_and_removes_streams(router: JunosEmulator) -> None:
    with plane_with(router, DIVERT) as plane:
        host, port = plane.serve_control()
        address = f"{host}:{port}"
        dataplane_request(address, {"op": "add_stream", "stream": {
            "name": "flood", "source": "198.51.100.0/24", "destination": "203.0.113.200", "protocol": 17,
            "packet_size": 1000, "bps": 8_000_000, "attack": True, "ingress": "edge1"}})
        plane.tick(1.0)
        state = dataplane_request(address, {"op": "state"})
        assert state["streams"][0]["name"] == "flood" and state["streams"][0]["offered_bps"] == 8_000_000
        assert state["centers"]["fra"]["203.0.113.128/25"]["dropped_pps"] == 1000
        assert dataplane_request(address, {"op": "remove_stream", "name": "flood"})["removed"] is True
        assert dataplane_request(address, {"op": "state"})["streams"] == []
        with pytest.raises(DataPlaneError, match="unknown stream fields"):
            dataplane_request(address, {"op": "add_stream", "stream": {"name": "x", "colour": "red"}})
    with pytest.raises(ValueError, match="non-loopback"):
        dataplane_request("192.0.2.1:9", {"op": "state"})


@dataclass
class RunningCollector:
    """A real collector on a loopback port, thresholds far above the test traffic, aggregates kept in memory."""

    target: tuple[str, int]
    store: MemoryStore
    finish: threading.Event
    thread: threading.Thread
    result: list[Counter[str]] = field(default_factory=list)

    def stop(self) -> Counter[str]:
        """Stop it; its decoder and socket counters."""
        self.finish.set()
        self.thread.join(timeout=WAIT_LIMIT)
        return self.result[0]

    def totals(self, prefixes: Iterable[str], since: int) -> dict[str, tuple[int, int]]:
        """Bytes and packets per prefix from second `since` to now."""
        now = int(time.time()) + 1
        series = {prefix: self.store.series(prefix, since, now) for prefix in prefixes}
        return {prefix: (sum(b for _, b, _ in rows), sum(p for _, _, p in rows)) for prefix, rows in series.items()}


@pytest.fixture
def collector() -> Iterator[RunningCollector]:
    store = MemoryStore()
    ready: dict[str, tuple[str, int]] = {}
    finish = threading.Event()
    result: list[Counter[str]] = []
    prefixes = [MonitoredPrefix(cidr, host_bps=10**12, prefix_bps=10**12) for cidr in ("203.0.113.0/25", "203.0.113.128/25")]
    thread = threading.Thread(target=lambda: result.append(run_collector(
        listen={"ipfix": ("127.0.0.1", 0)}, prefixes=lambda: prefixes, emit=lambda signal: None, redis_url=None,
        stop_event=finish, on_ready=ready.update, store=store)), daemon=True)
    thread.start()
    wait_for(lambda: bool(ready), timeout=WAIT_LIMIT)
    running = RunningCollector(ready["ipfix"], store, finish, thread, result)
    yield running
    finish.set()
    thread.join(timeout=WAIT_LIMIT)


def test_export_reaches_a_collector_at_the_delivered_rates(router: JunosEmulator, collector: RunningCollector) -> None:
    plane = plane_with(router, DISCARD_DNS + LIMIT_SYN + DIVERT)
    plane.add_stream(stream("amplified", "203.0.113.10", source="198.51.100.0/24", source_port=53, attack=True))
    plane.add_stream(stream("syn-flood", "203.0.113.11", protocol=6, tcp_flags=0x02, bps=16_000_000))
    plane.add_stream(stream("flood", "203.0.113.200", bps=40_000_000, attack=True))
    plane.add_stream(stream("customers", "203.0.113.201", protocol=6, destination_port=443, bps=4_000_000))
    encoder = encoder_for("ipfix", sampling=50, forwarding_status=True)
    ticks = 3
    since = int(time.time()) - 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(ticks):
            plane.export_once(sock, collector.target, encoder, "ipfix", 1.0)
    # Delivered per second: the SYN flood's 2 Mbit/s (250 packets) on the first half; the customers' 4 Mbit/s
    # (500 packets) come back clean from the center on the second; the DNS and UDP floods are gone.
    expected = {"203.0.113.0/25": (ticks * 250_000, ticks * 250), "203.0.113.128/25": (ticks * 500_000, ticks * 500)}
    assert wait_for(lambda: collector.totals(expected, since) == expected, timeout=WAIT_LIMIT)
    assert figures(plane, "syn-flood")[1] * ticks / 8 == expected["203.0.113.0/25"][0]
    assert plane.state()["centers"]["fra"]["203.0.113.128/25"]["clean_bps"] * ticks / 8 == 1_500_000
    # What the DNS rule discarded and the SYN policer took was exported too (ahead of each tick's delivered
    # records, so it has arrived by now), marked dropped, one record per stream per tick, and left out of the rates.
    assert collector.stop()["records_dropped_by_network"] == 2 * ticks


def test_the_run_loop_exports_each_interval_what_was_delivered(router: JunosEmulator, collector: RunningCollector) -> None:
    plane = plane_with(router, DIVERT)
    plane.add_stream(stream("flood", "203.0.113.200", bps=40_000_000, attack=True))
    plane.add_stream(stream("customers", "203.0.113.201", protocol=6, destination_port=443, bps=4_000_000))
    since = int(time.time()) - 1
    host, port = collector.target
    with plane:
        plane.run(f"{host}:{port}", fmt="ipfix", sampling=25, interval=0.25)
        wait_for(lambda: plane.stream_meters["customers"].delivered.packets >= 3 * 125, timeout=WAIT_LIMIT)
    delivered = plane.stream_meters["customers"].delivered
    expected = {"203.0.113.128/25": (int(delivered.bytes), int(delivered.packets))}
    assert wait_for(lambda: collector.totals(expected, since) == expected, timeout=WAIT_LIMIT)


SPEAKER, RECEIVER, SPEAKER_AS = "127.0.66.1", "127.0.66.2", 65300
BIRD_PORT = free_port(RECEIVER)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BirdRouter, ExaBgpSpeaker]]:
    """Sluice's ExaBGP speaker feeding one BIRD receiver that stands in for edge1's BGP."""
    base = tmp_path_factory.mktemp("dataplane-lab")
    bird = BirdRouter(base, "edge1", RECEIVER, 65301, [BirdPeer(SPEAKER, SPEAKER_AS)], port=BIRD_PORT)
    process = ExaBgpProcess(base / "exabgp", SPEAKER, SPEAKER_AS, SPEAKER, [BgpNeighborConfig(RECEIVER, 65301,
                                                                                               port=BIRD_PORT)])
    bird.start()
    process.start()
    try:
        bird.wait_established()
        yield bird, ExaBgpSpeaker(process.workdir)
    finally:
        process.stop()
        bird.stop()


def test_routes_the_speaker_announces_filter_divert_and_count_through_bird(
    router: JunosEmulator, lab: tuple[BirdRouter, ExaBgpSpeaker]
) -> None:
    bird, speaker = lab
    discard = FlowSpecRule("203.0.113.10/32", "discard", protocols=((17, 17),), source_ports=((53, 53),))
    limit = FlowSpecRule("203.0.113.11/32", "rate-limit", rate_bps=2_000_000, protocols=((6, 6),),
                         destination_ports=((80, 80), (443, 443)))
    syn = FlowSpecRule("203.0.113.12/32", "discard", protocols=((6, 6),), tcp_flags=("syn",))
    fragments = FlowSpecRule("203.0.113.13/32", "discard", protocols=((17, 17),), fragments=("is-fragment",))
    diversion = UnicastRoute("203.0.113.128/25", "192.0.2.50")
    for route in (discard, limit, syn, fragments, diversion):
        speaker.announce(route)
    wait_for(lambda: len(bird.flows(4)) == 4 and "203.0.113.128/25" in bird.unicast(4), timeout=WAIT_LIMIT)
    plane = DataPlane([EdgeRouter("edge1", router, bird)], [ScrubbingSite("fra", "192.0.2.50")])
    plane.add_stream(stream("amplified", "203.0.113.10", source_port=53, attack=True))
    plane.add_stream(stream("web", "203.0.113.11", protocol=6, destination_port=443))
    plane.add_stream(stream("flood", "203.0.113.200", attack=True))
    plane.add_stream(stream("syn-flood", "203.0.113.12", protocol=6, tcp_flags=0x02))
    plane.add_stream(stream("https", "203.0.113.12", protocol=6, tcp_flags=0x10))
    plane.add_stream(stream("fragments", "203.0.113.13", fragment=True))
    plane.tick(1.0)
    delivered = {name: figures(plane, name)[1] for name in ("amplified", "web", "flood", "syn-flood", "https",
                                                            "fragments")}
    assert delivered == {"amplified": 0, "web": 2_000_000, "flood": 0, "syn-flood": 0, "https": 8_000_000,
                         "fragments": 0}
    assert plane.state()["centers"]["fra"]["203.0.113.128/25"]["dropped_pps"] == 1000
    # The router names the routes it learned as the driver names the rules it reads counters for.
    counters = router.flow_counters()
    assert counters[(FILTER, junos_term_name(discard))].packets == 1000
    assert counters[(FILTER, junos_term_name(limit))].policed_packets == 750
    assert counters[(FILTER, junos_term_name(syn))].packets == 1000
    assert counters[(FILTER, junos_term_name(fragments))].packets == 1000
    speaker.withdraw(discard)
    wait_for(lambda: len(bird.flows(4)) == 3, timeout=WAIT_LIMIT)
    plane.tick(1.0)
    assert (FILTER, junos_term_name(discard)) not in router.flow_counters()
    assert figures(plane, "amplified") == (8_000_000, 8_000_000)
    for route in (limit, syn, fragments, diversion):
        speaker.withdraw(route)
