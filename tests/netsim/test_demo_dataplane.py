"""The demo's closed loop, piece by piece: `netsim.demo` builds the data plane over the network file's routers,
BIRD receivers and centers and fills it with ordinary traffic that is never an attack; `simulate_attack`'s streams
are detected by the real collector as the vector they stand for; the stand-in scrubbers report what the data
plane diverts, only for prefixes Sluice diverts there; and `simulate_attack --direct` still records the signal
alone (falling back to it, with the way to start the data plane, when none answers)."""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from collector import MemoryStore, MonitoredPrefix, run_collector
from collector.signals import AttackSignal, AttackVector, SignalPhase
from core.actors import CLOSED_LOOP
from devices.models import ScrubbingCenter
from mitigation.integrations.dataplane import (
    DEFAULT_ADDRESS,
    PORT_FILE,
    DataPlaneUnreachable,
    dataplane_address,
    dataplane_call,
)
from mitigation.management.commands.load_demo import DEMO_TENANTS
from mitigation.management.commands.simulate_attack import Command as SimulateAttack
from mitigation.management.commands.simulate_attack import Follower, attack_streams
from mitigation.models import Attack, CenterPrefixSample, Mitigation
from mitigation.services import signals
from netsim.dataplane import DataPlane, EdgeRouter, Stream
from netsim.demo import DEMO_PREFIXES, background_streams, dataplane_for, emulators_for, receivers_for
from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from portal.management.commands.demo_scrubbers import Command as DemoScrubbers
from portal.management.commands.demo_scrubbers import diverted_prefixes, scrubber_report, send_report
from tenants.services import ProfileInput
from tests.mitigation.test_center_reports import diverted
from tests.support.world import World

WAIT_LIMIT = 30.0  # only keeps a broken build from hanging; never what a test checks
NETWORK = yaml.safe_load(Path("netsim/demo-network.yaml").read_text())
# The thresholds the demo tenants get: load_demo leaves the profile's detection thresholds at their defaults.
HOST_BPS, HOST_PPS = ProfileInput.detection_threshold_bps, ProfileInput.detection_threshold_pps
GBPS = 1_000_000_000


def demo_prefix(cidr: str, **overrides: Any) -> MonitoredPrefix:
    """A prefix as run_collector watches a demo tenant's (baselines on, production's factor and floors)."""
    return MonitoredPrefix.from_thresholds(cidr, "demo", host_bps=HOST_BPS, host_pps=HOST_PPS, **overrides)


@pytest.fixture
def emitted() -> Iterator[tuple[list[AttackSignal], list[MonitoredPrefix], dict[str, tuple[str, int]]]]:
    """A real collector on a free loopback port with aggregates in memory; the signals it emits."""
    found: list[AttackSignal] = []
    watched: list[MonitoredPrefix] = []
    ready: dict[str, tuple[str, int]] = {}
    finish = threading.Event()
    thread = threading.Thread(target=lambda: run_collector(
        listen={"ipfix": ("127.0.0.1", 0)}, prefixes=lambda: list(watched), emit=found.append, redis_url=None,
        stop_event=finish, on_ready=ready.update, store=MemoryStore(), prefix_refresh_seconds=0.2), daemon=True)
    thread.start()
    wait_for(lambda: bool(ready), timeout=WAIT_LIMIT)
    yield found, watched, ready
    finish.set()
    thread.join(timeout=WAIT_LIMIT)


def plane_of(*names: str) -> DataPlane:
    """Routers with their emulated state (no NETCONF session needed to forward) and nothing configured."""
    return DataPlane([EdgeRouter(name, JunosEmulator(hostname=name)) for name in names])


# --- netsim.demo: the wiring ------------------------------------------------------------------------------------


def test_each_router_forwards_through_the_bird_receiver_its_speaker_neighbor_names(tmp_path: Path) -> None:
    plane = dataplane_for(NETWORK, emulators_for(NETWORK, tmp_path), receivers_for(NETWORK, tmp_path))
    assert {name: (router.bird.address if router.bird else None) for name, router in plane.routers.items()} == {
        "edge-fra-1": "127.0.10.1", "edge-ams-1": "127.0.10.2"}
    fra = plane.centers["fra"]
    assert (fra.next_hop_v4, fra.next_hop_v6, fra.redirect_target) == ("192.0.2.10", "2001:db8:ffff::10", "65010:100")
    assert sorted(plane.centers) == ["ams", "fra", "lon"]


def test_the_background_is_the_demo_tenants_prefixes() -> None:
    assert {tenant["slug"]: tuple(tenant["prefixes"]) for tenant in DEMO_TENANTS} == DEMO_PREFIXES


def test_the_background_stays_far_under_every_demo_threshold_and_enters_at_the_edge_routers() -> None:
    streams = background_streams(NETWORK)
    assert {s.ingress for s in streams} == {"edge-fra-1", "edge-ams-1"}
    assert not any(s.attack for s in streams)
    for cidr in (c for prefixes in DEMO_PREFIXES.values() for c in prefixes):
        prefix = demo_prefix(cidr)
        mine = [s for s in streams if ipaddress.ip_address(s.destination) in prefix.network]
        assert mine, cidr
        hosts = {s.destination for s in mine}
        assert "203.0.113.53" not in hosts  # Acme's resolver, on the never-block list
        # The strictest limit anything in the background meets is the learned baselines' floor (a quarter of the
        # host threshold), for a host as for the whole prefix; stay under a third of it.
        for host in hosts:
            assert sum(s.bps for s in mine if s.destination == host) < prefix.baseline_min_bps / 3
            assert sum(s.pps for s in mine if s.destination == host) < prefix.baseline_min_pps / 3
        assert sum(s.bps for s in mine) < prefix.baseline_min_bps / 2
        assert sum(s.pps for s in mine) < prefix.baseline_min_pps / 2
        assert prefix.baseline_min_bps <= min(HOST_BPS, prefix.prefix_bps or HOST_BPS)


def test_the_background_through_the_real_collector_is_never_an_attack(emitted: Any) -> None:
    """Baselines warm after one second here (production: 15 minutes), so they judge the background too."""
    found, watched, ready = emitted
    watched += [demo_prefix(c, baseline_warmup=1, hold_seconds=1) for p in DEMO_PREFIXES.values() for c in p]
    plane = plane_of("edge-fra-1", "edge-ams-1")
    for stream in background_streams(NETWORK):
        plane.add_stream(stream)
    host, port = ready["ipfix"]
    with plane:
        plane.run(f"{host}:{port}", fmt="ipfix", sampling=100, interval=0.25)
        wait_for(lambda: plane.stream_meters["acme-web-203.0.113.10"].delivered.packets >= 4 * 1667, timeout=WAIT_LIMIT)
    assert found == []


# --- simulate_attack: each vector's shape is detected as that vector --------------------------------------------

VECTORS = [v for v in AttackVector]


def test_each_vector_s_streams_are_detected_as_that_vector_by_the_real_collector(emitted: Any) -> None:
    found, watched, ready = emitted
    plane = plane_of("edge1")
    targets: dict[AttackVector, str] = {}
    for index, vector in enumerate(VECTORS):
        prefix = f"100.100.{index}.0/24"
        watched.append(demo_prefix(prefix))
        target = f"100.100.{index}.10"
        # Carpet bombing: 32 hosts over the whole prefix's threshold (16 hosts' worth), none over its own.
        bps = 20 * GBPS if vector is AttackVector.CARPET_BOMBING else 2 * GBPS
        for spec in attack_streams(vector, target, bps, "edge1", prefix=prefix):
            plane.add_stream(Stream.from_dict(spec))
        targets[vector] = prefix if vector is AttackVector.CARPET_BOMBING else f"{target}/32"
    host, port = ready["ipfix"]

    def starts() -> dict[str, AttackSignal]:
        return {s.target: s for s in list(found) if s.phase == SignalPhase.START}

    with plane:
        plane.run(f"{host}:{port}", fmt="ipfix", sampling=100, interval=0.25)
        wait_for(lambda: set(targets.values()) <= set(starts()), timeout=WAIT_LIMIT)
    seen = starts()
    assert {vector: seen[target].vectors[0] for vector, target in targets.items() if target in seen} == {
        vector: vector for vector in VECTORS}
    for vector in (AttackVector.DNS_AMPLIFICATION, AttackVector.MEMCACHED_AMPLIFICATION):
        # A handful of amplifiers, named as blocks holding exactly them: planning may match its FlowSpec rules on
        # them, and every amplifier's stream is inside one (the data plane matches a source only holding it all).
        signal = seen[targets[vector]]
        blocks = [ipaddress.ip_network(block) for block in signal.top_sources]
        amplifiers = {ipaddress.ip_network(s["source"]) for s in attack_streams(vector, "100.100.0.10", GBPS, "e")}
        assert signal.details.get("sources") == "few"
        assert all(any(a.subnet_of(b) for b in blocks) for a in amplifiers)  # type: ignore[arg-type]
        assert sum(b.num_addresses for b in blocks) == len(amplifiers)
    for vector in (AttackVector.UDP_FLOOD, AttackVector.SYN_FLOOD):
        # A spoofed spread: too wide to name, so rules match the destination and the shape, not the senders.
        assert seen[targets[vector]].details.get("sources") != "few"


def test_attack_sources_belong_to_no_demo_tenant_and_sum_to_the_rate() -> None:
    owned = [ipaddress.ip_network(c) for p in DEMO_PREFIXES.values() for c in p]
    for vector in VECTORS:
        specs = attack_streams(vector, "203.0.113.10", 10 * GBPS, "edge-fra-1", prefix="203.0.113.0/24")
        assert 10 * GBPS - len(specs) < sum(s["bps"] for s in specs) <= 10 * GBPS
        for spec in specs:
            source = ipaddress.ip_network(spec["source"])
            assert not any(source.overlaps(o) for o in owned if o.version == source.version), spec
            assert spec["attack"] and spec["ingress"] == "edge-fra-1"
    v6 = attack_streams(AttackVector.NTP_AMPLIFICATION, "2001:db8:100::10", GBPS, "edge-fra-1")
    assert all(ipaddress.ip_network(s["source"]).version == 6 for s in v6)


# --- demo_scrubbers: reports from what the data plane diverts ---------------------------------------------------

RATES = {"received_bps": 40.6e9, "received_pps": 9.0e6 + 0.6, "dropped_bps": 38.3e9 + 0.5, "dropped_pps": 8.8e6 + 0.3,
         "clean_bps": 2.3e9 + 0.5, "clean_pps": 0.2e6 + 0.3, "received_bytes": 1e12, "received_packets": 1e9,
         "dropped_bytes": 0, "dropped_packets": 0, "clean_bytes": 0, "clean_packets": 0}
STALE = {name: 0.0 for name in RATES} | {"received_bps": 1e9, "received_pps": 1e5, "clean_bps": 1e9, "clean_pps": 1e5}


def test_a_center_reports_a_baseline_plus_what_it_receives_and_figures_for_the_prefixes_sluice_diverts_there() -> None:
    figures = {"203.0.113.0/24": RATES, "198.51.100.0/25": STALE}
    report = scrubber_report(figures, {ipaddress.ip_network("203.0.113.0/24")}, capacity_gbps=800, capacity_mpps=600)
    assert report.load_gbps == pytest.approx(0.15 * 800 + 40.6 + 1.0)
    assert report.load_mpps == pytest.approx(0.15 * 600 + 9.0 + 0.1, abs=1e-3)
    assert report.prefixes == [{"prefix": "203.0.113.0/24", "received_bps": 40_600_000_000,
                                "dropped_bps": 38_300_000_000, "clean_bps": 2_300_000_000,
                                "received_pps": 9_000_001, "dropped_pps": 8_800_000, "clean_pps": 200_000}]


def test_rounding_never_makes_dropped_and_clean_exceed_what_was_received() -> None:
    tiny = {"received_bps": 1.4, "dropped_bps": 0.7, "clean_bps": 0.7, "received_pps": 0.4, "dropped_pps": 0.2,
            "clean_pps": 0.2}
    line = scrubber_report({"203.0.113.0/24": tiny}, {ipaddress.ip_network("203.0.113.0/24")},
                           capacity_gbps=1, capacity_mpps=1).prefixes[0]
    assert line["dropped_bps"] + line["clean_bps"] <= line["received_bps"] == 1  # type: ignore[operator]
    assert line["dropped_pps"] == line["clean_pps"] == line["received_pps"] == 0


def test_without_the_data_plane_a_center_reports_its_baseline_load_only() -> None:
    report = scrubber_report(None, {ipaddress.ip_network("203.0.113.0/24")}, capacity_gbps=400, capacity_mpps=300)
    assert (report.load_gbps, report.load_mpps, report.prefixes) == (60.0, 45.0, [])


@pytest.mark.django_db
def test_a_prefix_sluice_no_longer_diverts_there_is_left_out_and_the_rest_is_recorded(world: World) -> None:
    fra = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=800, capacity_mpps=600,
                                         diversion_next_hop_v4="192.0.2.10")
    mitigation = diverted(world.acme, fra)
    assert diverted_prefixes() == {fra.pk: {ipaddress.ip_network("203.0.113.0/24")}}
    figures = {"203.0.113.0/24": RATES, "198.51.100.0/25": STALE}
    # As if Sluice still diverted both when the report was built: the service refuses the second line.
    report = scrubber_report(figures, {ipaddress.ip_network(p) for p in figures}, capacity_gbps=800, capacity_mpps=600)
    assert send_report(fra, report) == ["198.51.100.0/25"]
    sample = CenterPrefixSample.objects.get(mitigation=mitigation)
    assert (str(sample.prefix), sample.dropped_bps) == ("203.0.113.0/24", 38_300_000_000)
    fra.refresh_from_db()
    assert fra.load_gbps == pytest.approx(report.load_gbps)


@pytest.mark.django_db
def test_each_round_every_center_reports_and_only_the_diverted_prefix_of_the_data_plane_s_state(world: World) -> None:
    fra = ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=800, capacity_mpps=600,
                                         diversion_next_hop_v4="192.0.2.10")
    ams = ScrubbingCenter.objects.create(slug="ams", name="Amsterdam", capacity_gbps=400, capacity_mpps=300)
    mitigation = diverted(world.acme, fra)
    state = {"ok": True, "streams": [], "centers": {"fra": {"203.0.113.0/24": RATES, "198.51.100.0/25": STALE},
                                                    "ams": {}}}
    DemoScrubbers()._report_all(state)
    DemoScrubbers()._report_all(None)  # the data plane gone: baseline loads, no figures
    assert CenterPrefixSample.objects.filter(mitigation=mitigation).count() == 1
    fra.refresh_from_db()
    ams.refresh_from_db()
    assert (fra.load_gbps, ams.load_gbps) == (120.0, 60.0)


# --- simulate_attack: the signal alone ---------------------------------------------------------------------------


@pytest.fixture
def demo_network(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "_schedule_planning", lambda: None)
    call_command("load_network", "netsim/demo-network.yaml", stdout=io.StringIO())


@pytest.mark.django_db
def test_direct_records_the_signal_and_its_end_without_traffic(demo_network: None) -> None:
    out = io.StringIO()
    call_command("simulate_attack", "acme", "--direct", "--vector", "dns_amplification", "--gbps", "20",
                 "--duration", "0", "--wait", "0", stdout=out)
    attack = Attack.objects.get(target="203.0.113.10/32")
    assert attack.vectors == ["dns_amplification"] and attack.end_signalled_at is not None
    assert "signal: dns_amplification at 20.0 Gbps on 203.0.113.10" in out.getvalue()


@pytest.mark.django_db
def test_without_a_data_plane_it_says_how_to_start_one_and_records_the_signal_directly(demo_network: None) -> None:
    out = io.StringIO()
    with _closed_port() as port:
        call_command("simulate_attack", "acme", "--dataplane", f"127.0.0.1:{port}", "--duration", "0", "--wait", "0",
                     stdout=out)
    assert "python -m netsim.demo" in out.getvalue() and "Falling back to --direct" in out.getvalue()
    assert Attack.objects.filter(target="203.0.113.10/32", vectors=["udp_flood"]).exists()


@pytest.mark.django_db
def test_through_the_data_plane_the_streams_enter_at_the_exporting_edge_router_and_are_removed_after(
        demo_network: None) -> None:
    added: list[str] = []

    class Recording(DataPlane):
        def add_stream(self, stream: Stream) -> None:
            added.append(stream.ingress)
            super().add_stream(stream)

    plane = Recording([EdgeRouter(name, JunosEmulator(hostname=name)) for name in ("edge-fra-1", "edge-ams-1")])
    with plane:
        host, port = plane.serve_control("127.0.0.1", 0)
        out = io.StringIO()
        call_command("simulate_attack", "acme", "--vector", "syn_flood", "--dataplane", f"{host}:{port}",
                     "--duration", "0.5", "--wait", "0", stdout=out)
    assert added and set(added) == {"edge-fra-1"}  # the router whose flows the collector accepts
    assert plane.streams == {}
    assert "traffic: syn_flood at 10.0 Gbps on 203.0.113.10 entering at edge-fra-1" in out.getvalue()
    assert "no attack was detected" in out.getvalue()


@contextmanager
def _closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening: a connect is refused)."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield int(bound.getsockname()[1])


def test_the_control_address_comes_from_the_option_else_the_port_netsim_wrote_else_the_default(
        tmp_path: Path) -> None:
    assert dataplane_address("127.0.0.2:5000", tmp_path) == ("127.0.0.2", 5000)
    assert dataplane_address("[::1]:5000", tmp_path) == ("::1", 5000)
    assert dataplane_address(None, tmp_path) == DEFAULT_ADDRESS
    (tmp_path / PORT_FILE).parent.mkdir(parents=True)
    (tmp_path / PORT_FILE).write_text("4811\n")
    assert dataplane_address(None, tmp_path) == ("127.0.0.1", 4811)
    with pytest.raises(ValueError, match="host:port"):
        dataplane_address("4790", tmp_path)


@pytest.mark.django_db
def test_a_control_address_that_is_not_host_port_is_a_clear_error(demo_network: None) -> None:
    with pytest.raises(CommandError, match="--dataplane: expected host:port"):
        call_command("simulate_attack", "acme", "--dataplane", "nowhere", "--duration", "0", "--wait", "0")


def test_a_request_the_data_plane_refuses_says_what_it_refused() -> None:
    with plane_of("edge-fra-1") as plane:
        address = plane.serve_control("127.0.0.1", 0)
        assert dataplane_call(address, {"op": "state"})["streams"] == []
        with pytest.raises(DataPlaneUnreachable, match=r"refused add_stream: .*bps"):
            dataplane_call(address, {"op": "add_stream", "stream": {"name": "x", "destination": "203.0.113.10"}})


@pytest.mark.django_db
def test_the_follower_prints_the_closed_loops_escalation_once_and_skips_the_unplanned_state(world: World) -> None:
    attack = Attack.objects.create(tenant=world.acme, target="203.0.113.10/32", vectors=["udp_flood"], bps=10**9)
    mitigation = Mitigation.objects.create(attack=attack, tenant=world.acme, state="detected", level="none")
    command = SimulateAttack(stdout=io.StringIO())
    follower = Follower(command)
    follower.follow(attack.pk, deadline=time.monotonic() + 0.1)
    Mitigation.objects.filter(pk=mitigation.pk).update(state="active", level="flowspec", override_level="diversion",
                                                       override_by=str(CLOSED_LOOP))
    for _ in range(2):
        follower.follow(attack.pk, deadline=time.monotonic() + 0.1)
    out = command.stdout.getvalue()
    assert "detected: none" not in out
    assert out.count("escalated by the closed loop: flowspec -> diversion") == 1
