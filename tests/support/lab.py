"""A small real network for tests that cross the device boundary: an emulated Junos edge router, a BIRD receiver
standing in for it on BGP, a supervised ExaBGP speaker, and the inventory loaded from a network file.

Everything is committed (other processes must see it) and torn down by the fixture that made it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.core.management import call_command
from django.utils import timezone

from devices.drivers.bgp import ExaBgpProcess
from devices.models import BgpSpeaker, ScrubbingCenter, UpstreamPeer
from devices.services import speaker_process
from mitigation.models import Attack, ControlSwitch
from netsim.bgplab import BirdPeer, BirdRouter
from netsim.junos import JunosEmulator
from tests.support.processes import free_port

NETWORK = """
centers:
  - {{slug: lab-fra, name: Lab Frankfurt, site: FRA, region: eu, capacity_gbps: 400, capacity_mpps: 300,
     diversion_next_hop_v4: 192.0.2.10, diversion_next_hop_v6: "2001:db8:ffff::10", routing_instance: SCRUB-FRA,
     route_target: "65010:100"}}
{more_centers}
routers:
  - {{name: lab-edge-1, vendor: juniper, platform: junos, role: edge, center: lab-fra, mgmt_host: 127.0.0.1,
     mgmt_port: {router_port}, username: sluice, password: lab-secret}}
{more_routers}
upstreams:
  - {{name: lab-transit, isp: Transit, asn: 64500, router: lab-edge-1, center: lab-fra,
     neighbor_address: 198.51.100.201, capacity_gbps: 100, blackhole_community: "64500:666",
     prepend_community: "64500:3"}}
speakers:
  - name: lab-speaker
    kind: exabgp
    router_id: {speaker}
    local_as: 65010
    local_address: {speaker}
    neighbors:
      - {{peer_address: {bird}, peer_as: 65020, port: {port}, router: lab-edge-1,
         families: [ipv4 unicast, ipv6 unicast, ipv4 flow, ipv6 flow]}}
latencies:
{latencies}
"""


SECOND_CENTER = """  - {slug: lab-ams, name: Lab Amsterdam, site: AMS, region: eu, capacity_gbps: 400, capacity_mpps: 300,
     diversion_next_hop_v4: 192.0.2.20, diversion_next_hop_v6: "2001:db8:ffff::20", routing_instance: SCRUB-AMS,
     route_target: "65010:200"}"""
SECOND_ROUTER = """  - {{name: lab-edge-2, vendor: juniper, platform: junos, role: edge, center: lab-ams, mgmt_host: 127.0.0.1,
     mgmt_port: {port}, username: sluice, password: lab-secret}}"""


@dataclass
class Lab:
    emulator: JunosEmulator
    bird: BirdRouter
    speaker: ExaBgpProcess
    base: Path
    # A second edge router at a second, farther center (lab-ams), when the lab was asked for one.
    second: JunosEmulator | None = None

    def router_has(self, text: str) -> bool:
        return any(text in line for line in self.emulator.committed_set())


def refresh_telemetry() -> None:
    """Fresh, healthy telemetry for every center and upstream, as the pollers would record it."""
    now = timezone.now()
    ScrubbingCenter.objects.update(load_gbps=10, load_mpps=5, load_updated_at=now, healthy=True)
    UpstreamPeer.objects.update(session_state="established", telemetry_updated_at=now, utilisation=0.2)


@contextmanager
def running_lab(
    base: Path, *, bird_address: str, speaker_address: str, bgp_port: int | None = None,
    tenants: tuple[str, ...] = ("acme", "globex"), second_router: bool = False,
) -> Iterator[Lab]:
    """Start the lab's elements and load its inventory; the caller holds the database unblocked.

    The BGP port is this process's own unless given, so test runs side by side never collide.
    """
    bgp_port = bgp_port or free_port(bird_address)
    emulator = JunosEmulator(hostname="lab-edge-1", username="sluice", password="lab-secret")
    second = JunosEmulator(hostname="lab-edge-2", username="sluice", password="lab-secret") if second_router else None
    bird = BirdRouter(base, "bird", bird_address, 65020, [BirdPeer(speaker_address, 65010)], port=bgp_port)
    speaker: ExaBgpProcess | None = None
    try:
        # The router's upstream session is up, as its telemetry poll (beat, when a test runs it) will read it.
        emulator.set_bgp_neighbor("198.51.100.201", remote_as=64500)
        emulator.start()
        if second is not None:
            second.start()
        bird.start()
        network_file = base / "network.yaml"
        latency = "{lab-fra: 10, lab-ams: 20}" if second else "{lab-fra: 10}"
        network_file.write_text(
            NETWORK.format(router_port=emulator.port, speaker=speaker_address, bird=bird_address, port=bgp_port,
                           latencies="\n".join(f"  {slug}: {latency}" for slug in tenants) or "  {}",
                           more_centers=SECOND_CENTER if second else "",
                           more_routers=SECOND_ROUTER.format(port=second.port) if second else "")
        )
        call_command("load_network", str(network_file), stdout=io.StringIO())
        refresh_telemetry()
        row = BgpSpeaker.objects.get(name="lab-speaker")
        shutil.rmtree(row.workdir, ignore_errors=True)  # no journal of an earlier lab's routes may be replayed
        speaker = speaker_process(row)
        speaker.start()
        bird.wait_established(timeout=30)
        yield Lab(emulator, bird, speaker, base, second)
    finally:
        if speaker is not None:
            speaker.stop()
        bird.stop()
        emulator.stop()
        if second is not None:
            second.stop()
        Attack.objects.all().delete()
        ControlSwitch.objects.update(panic=False)
        call_command("load_network", str(_empty_network(base)), "--prune", stdout=io.StringIO())


def _empty_network(base: Path) -> Path:
    path = base / "empty.yaml"
    path.write_text("centers: []\n")
    return path
