"""The ExaBGP speaker driver against real daemons: what BIRD learns is what the driver promises.

One ExaBGP (AS 65100 on 127.0.61.1) feeds two BIRD routers: r1 eBGP (AS 65101, every family) and r2 iBGP
(AS 65100, unicast only). Each test uses its own prefixes and leaves nothing announced.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.drivers.base import (
    BLACKHOLE_COMMUNITY,
    DriverError,
    FlowSpecRule,
    LockError,
    SpeakerError,
    UnicastRoute,
)
from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker, SpeakerSettings
from devices.drivers.bgp.config import LOCK_FILE
from devices.drivers.bgp.journal import Journal, workdir_lock
from netsim.bgplab import BirdPeer, BirdRouter
from netsim.polling import wait_for
from tests.support.processes import free_port

SPEAKER = "127.0.61.1"
R1 = "127.0.61.2"
R2 = "127.0.61.3"
LOCAL_AS = 65100
R1_AS = 65101
PORT = free_port(R1, R2, "127.0.61.5")  # per process: two test runs side by side never collide
UNICAST = ("ipv4", "ipv6")
REPO = Path(__file__).resolve().parents[2]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers where PID 1 does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BirdRouter, BirdRouter]]:
    base = tmp_path_factory.mktemp("bird")
    r1 = BirdRouter(base, "r1", R1, R1_AS, [BirdPeer(SPEAKER, LOCAL_AS)], port=PORT)
    r2 = BirdRouter(base, "r2", R2, LOCAL_AS, [BirdPeer(SPEAKER, LOCAL_AS, channels=UNICAST)], port=PORT)
    r1.start()
    r2.start()
    yield r1, r2
    r1.stop()
    r2.stop()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory, routers: tuple[BirdRouter, BirdRouter]) -> Iterator[ExaBgpProcess]:
    neighbors = [
        BgpNeighborConfig(R1, R1_AS, port=PORT),
        BgpNeighborConfig(R2, LOCAL_AS, families=("ipv4 unicast", "ipv6 unicast"), port=PORT),
    ]
    speaker_process = ExaBgpProcess(tmp_path_factory.mktemp("exabgp"), SPEAKER, LOCAL_AS, SPEAKER, neighbors)
    speaker_process.start()
    for router in routers:
        router.wait_established()
    yield speaker_process
    speaker_process.stop()


@pytest.fixture
def speaker(process: ExaBgpProcess) -> Iterator[ExaBgpSpeaker]:
    client = ExaBgpSpeaker(process.workdir)
    yield client
    client.sync(set())


@pytest.fixture
def r1(routers: tuple[BirdRouter, BirdRouter]) -> BirdRouter:
    return routers[0]


@pytest.fixture
def r2(routers: tuple[BirdRouter, BirdRouter]) -> BirdRouter:
    return routers[1]


def test_unicast_v4_with_communities_reaches_every_neighbor_and_leaves_on_withdraw(
    speaker: ExaBgpSpeaker, r1: BirdRouter, r2: BirdRouter
) -> None:
    route = UnicastRoute("198.51.100.0/24", "192.0.2.10", (BLACKHOLE_COMMUNITY, "65101:3000"))
    speaker.announce(route)
    for router in (r1, r2):
        learned = wait_for(lambda router=router: router.unicast(4).get(route.prefix))
        assert learned.next_hop == "192.0.2.10"
        assert set(learned.communities) == {"65535:666", "65101:3000"}
    assert route in speaker.announced()

    speaker.withdraw(route)
    for router in (r1, r2):
        wait_for(lambda router=router: route.prefix not in router.unicast(4))
    assert route not in speaker.announced()


def test_unicast_v6_with_communities(speaker: ExaBgpSpeaker, r1: BirdRouter, r2: BirdRouter) -> None:
    route = UnicastRoute("2001:db8:61::/48", "2001:db8::10", ("65100:80",))
    speaker.announce(route)
    for router in (r1, r2):
        learned = wait_for(lambda router=router: router.unicast(6).get(route.prefix))
        assert learned.next_hop == "2001:db8::10"
        assert learned.communities == ("65100:80",)
    speaker.withdraw(route)
    for router in (r1, r2):
        wait_for(lambda router=router: route.prefix not in router.unicast(6))


def test_prepend_to_a_subset_of_neighbors(speaker: ExaBgpSpeaker, r1: BirdRouter, r2: BirdRouter) -> None:
    steered = UnicastRoute("203.0.113.0/24", "192.0.2.20", as_path_prepend=3, neighbors=(R1,))
    marker = UnicastRoute("203.0.114.0/24", "192.0.2.20")
    speaker.announce(steered)
    speaker.announce(marker)
    learned = wait_for(lambda: r1.unicast(4).get(steered.prefix))
    assert learned.as_path == (LOCAL_AS,) * 4
    # The marker went out after the steered route on the same speaker: once r2 has it, r2 saw all it will get.
    wait_for(lambda: marker.prefix in r2.unicast(4))
    assert steered.prefix not in r2.unicast(4)
    assert wait_for(lambda: r1.unicast(4).get(marker.prefix)).as_path == (LOCAL_AS,)


def test_local_preference_on_ibgp(speaker: ExaBgpSpeaker, r2: BirdRouter) -> None:
    route = UnicastRoute("203.0.115.0/24", "192.0.2.30", local_preference=250, neighbors=(R2,))
    speaker.announce(route)
    assert wait_for(lambda: r2.unicast(4).get(route.prefix)).local_pref == 250


def test_moving_a_prefix_to_new_attributes_never_withdraws_it(speaker: ExaBgpSpeaker, r1: BirdRouter) -> None:
    old = UnicastRoute("198.51.101.0/24", "192.0.2.40", ("65100:1",))
    new = UnicastRoute("198.51.101.0/24", "192.0.2.41", ("65100:2",))
    speaker.announce(old)
    wait_for(lambda: r1.unicast(4).get(old.prefix))
    assert speaker.sync({new}) == (1, 1)
    learned = wait_for(lambda: (r := r1.unicast(4).get(new.prefix)) and r.next_hop == "192.0.2.41" and r)
    assert learned.communities == ("65100:2",)
    assert speaker.announced() == {new}


def test_flowspec_discard_v4_with_every_match_component(speaker: ExaBgpSpeaker, r1: BirdRouter) -> None:
    rule = FlowSpecRule(
        destination="198.51.102.1/32",
        source="192.0.2.0/24",
        action="discard",
        protocols=((6, 6), (17, 17)),
        destination_ports=((53, 53), (1000, 2000)),
        source_ports=((123, 123),),
        packet_lengths=((1400, 9216),),
        tcp_flags=("syn", "ack"),
        fragments=("is-fragment",),
    )
    speaker.announce(rule)
    (learned,) = wait_for(lambda: r1.flows_to(rule.destination))
    assert learned.source == "192.0.2.0/24"
    assert learned.ranges("proto") == ((6, 6), (17, 17))
    assert learned.ranges("dport") == ((53, 53), (1000, 2000))
    assert learned.ranges("sport") == ((123, 123),)
    assert learned.ranges("length") == ((1400, 9216),)
    assert "tcp flags" in learned.components and "is_fragment" in learned.components["fragment"]
    assert learned.actions == (("discard", None),)
    speaker.withdraw(rule)
    wait_for(lambda: not r1.flows_to(rule.destination))


def test_flowspec_icmp_rate_limit_and_mark(speaker: ExaBgpSpeaker, r1: BirdRouter) -> None:
    limited = FlowSpecRule(
        "198.51.102.2/32", "rate-limit", protocols=((1, 1),), icmp_types=((8, 8),), icmp_codes=((0, 0),),
        rate_bps=8_000_000,
    )
    marked = FlowSpecRule("198.51.102.3/32", "mark", protocols=((17, 17),), dscp=10)
    speaker.apply(announce=[limited, marked])
    (learned,) = wait_for(lambda: r1.flows_to(limited.destination))
    assert learned.ranges("icmp type") == ((8, 8),) and learned.ranges("icmp code") == ((0, 0),)
    assert learned.actions == (("rate-limit", 8_000_000),)
    assert wait_for(lambda: r1.flows_to(marked.destination))[0].actions == (("mark", 10),)
    speaker.apply(withdraw=[limited, marked])
    wait_for(lambda: not r1.flows(4))


def test_flowspec_redirect_v4_and_v6(speaker: ExaBgpSpeaker, r1: BirdRouter) -> None:
    v4 = FlowSpecRule("198.51.102.4/32", "redirect", protocols=((17, 17),), redirect_target="65100:666")
    v6 = FlowSpecRule(
        "2001:db8:62::/48", "redirect", source="2001:db8:99::/48", protocols=((6, 6),),
        destination_ports=((443, 443),), redirect_target="65100:667",
    )
    v6_discard = FlowSpecRule("2001:db8:63::1/128", "discard", packet_lengths=((0, 100),))
    speaker.apply(announce=[v4, v6, v6_discard])
    assert wait_for(lambda: r1.flows_to(v4.destination))[0].actions == (("redirect", "65100:666"),)
    (learned,) = wait_for(lambda: r1.flows_to(v6.destination))
    assert learned.actions == (("redirect", "65100:667"),)
    assert learned.source == "2001:db8:99::/48" and learned.ranges("next header") == ((6, 6),)
    assert wait_for(lambda: r1.flows_to(v6_discard.destination))[0].actions == (("discard", None),)
    speaker.sync(set())
    wait_for(lambda: not r1.flows(4) and not r1.flows(6))


def test_sync_is_exact_and_idempotent(speaker: ExaBgpSpeaker, r1: BirdRouter) -> None:
    desired: set[UnicastRoute | FlowSpecRule] = {
        UnicastRoute(f"198.51.103.{i * 16}/28", "192.0.2.50", ("65100:7",)) for i in range(8)
    }
    desired.add(FlowSpecRule("198.51.103.1/32", "discard", protocols=((17, 17),)))
    stray = UnicastRoute("198.51.104.0/24", "192.0.2.50")
    speaker.announce(stray)
    assert speaker.sync(desired) == (9, 1)
    assert speaker.sync(desired) == (0, 0)
    assert speaker.announced() == desired
    wanted = {r.prefix for r in desired if isinstance(r, UnicastRoute)}
    wait_for(lambda: set(r1.unicast(4)) == wanted and len(r1.flows(4)) == 1)


def test_killed_speaker_comes_back_with_the_same_routes(
    speaker: ExaBgpSpeaker, process: ExaBgpProcess, r1: BirdRouter, r2: BirdRouter
) -> None:
    routes: set[UnicastRoute | FlowSpecRule] = {
        UnicastRoute("198.51.105.0/24", "192.0.2.60", (BLACKHOLE_COMMUNITY,)),
        UnicastRoute("2001:db8:64::/48", "2001:db8::60"),
        UnicastRoute("198.51.106.0/24", "192.0.2.61", as_path_prepend=1, neighbors=(R1,)),
        FlowSpecRule("198.51.105.1/32", "rate-limit", protocols=((17, 17),), rate_bps=80_000),
    }
    speaker.sync(routes)
    wait_for(lambda: len(r1.unicast(4)) == 2 and r1.flows(4))
    old_pid, restarts = process.pid, process.restarts
    process.kill()
    # The restart itself is observed: the routers see their sessions drop, and a new process takes over.
    wait_for(lambda: not r1.established() and not r2.established(), timeout=15, what="the sessions to drop")
    wait_for(lambda: process.restarts > restarts and process.pid not in (None, old_pid), timeout=15)
    process.wait_ready()
    r1.wait_established()
    r2.wait_established()
    wait_for(lambda: len(r1.unicast(4)) == 2 and len(r1.unicast(6)) == 1 and r1.flows(4), timeout=15)
    assert r1.unicast(4)["198.51.106.0/24"].as_path == (LOCAL_AS, LOCAL_AS)
    assert wait_for(lambda: r2.unicast(4).get("198.51.105.0/24")).communities == (BLACKHOLE_COMMUNITY,)
    assert "198.51.106.0/24" not in r2.unicast(4)
    assert speaker.announced() == routes
    assert speaker.sync(routes) == (0, 0)


def test_concurrent_threads_and_processes_do_not_garble_commands(
    speaker: ExaBgpSpeaker, process: ExaBgpProcess, r1: BirdRouter
) -> None:
    def worker(block: int) -> None:
        client = ExaBgpSpeaker(process.workdir)
        for i in range(20):
            client.announce(UnicastRoute(f"10.61.{block}.{i * 4}/30", "192.0.2.70", (f"65100:{block}",)))

    threads = [threading.Thread(target=worker, args=(block,)) for block in range(4)]
    script = (
        "import sys; from devices.drivers.base import UnicastRoute; from devices.drivers.bgp import ExaBgpSpeaker\n"
        "s = ExaBgpSpeaker(sys.argv[1]); b = int(sys.argv[2])\n"
        "for i in range(20): s.announce(UnicastRoute(f'10.61.{b}.{i * 4}/30', '192.0.2.70', (f'65100:{b}',)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(process.workdir), str(block)], env=env)
        for block in (4, 5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [child.wait(60) for child in children] == [0, 0]

    expected = {f"10.61.{b}.{i * 4}/30" for b in range(6) for i in range(20)}
    assert {r.prefix for r in speaker.announced() if isinstance(r, UnicastRoute)} == expected
    wait_for(lambda: set(r1.unicast(4)) == expected)
    assert all(r.communities == (f"65100:{r.prefix.split('.')[2]}",) for r in r1.unicast(4).values())


def test_refused_command_raises_and_is_not_recorded(speaker: ExaBgpSpeaker) -> None:
    bad = FlowSpecRule("198.51.107.1/32", "redirect", redirect_target="70000:70000")
    with pytest.raises(SpeakerError, match="refused"):
        speaker.announce(bad)
    assert bad not in speaker.announced()


def test_routes_no_neighbor_can_carry_are_refused(speaker: ExaBgpSpeaker) -> None:
    with pytest.raises(SpeakerError, match="does not carry"):
        speaker.announce(FlowSpecRule("198.51.107.2/32", "discard", neighbors=(R2,)))
    with pytest.raises(SpeakerError, match="not a neighbor"):
        speaker.announce(UnicastRoute("198.51.107.0/24", "192.0.2.80", neighbors=("127.0.61.99",)))
    assert speaker.announced() == set()


def test_speaker_down_raises_speaker_error(tmp_path: Path, process: ExaBgpProcess) -> None:
    (tmp_path / "speaker.json").write_text((process.workdir / "speaker.json").read_text())
    client = ExaBgpSpeaker(tmp_path, connect_timeout=0.1)
    with pytest.raises(SpeakerError, match="not running"):
        client.announce(UnicastRoute("198.51.108.0/24", "192.0.2.90"))
    with pytest.raises(SpeakerError):
        ExaBgpSpeaker(tmp_path / "nowhere").announce(UnicastRoute("198.51.108.0/24", "192.0.2.90"))


def test_a_held_lock_times_out_with_lock_error(process: ExaBgpProcess) -> None:
    client = ExaBgpSpeaker(process.workdir, lock_timeout=0.05)
    with workdir_lock(process.workdir / LOCK_FILE, 1.0), pytest.raises(LockError) as caught:
        client.announce(UnicastRoute("198.51.109.0/24", "192.0.2.91"))
    assert isinstance(caught.value, DriverError) and caught.value.transient
    assert client.announced() == set()


def test_journal_followers_survive_compaction(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    writer, follower = Journal(path, index_key=lambda e: e[:1]), Journal(path, index_key=lambda e: e[:1])
    for round_ in range(3):
        entries = [f"{chr(97 + i % 3)}{round_}-{i}" for i in range(1500)]
        writer.append(entries, [])
        assert follower.refresh() == entries
        writer.append([], entries[1:])
        assert follower.refresh() == entries[:1]
        assert list(follower.index) == ["a"]
        writer.append([], entries[:1])
    writer.compact()
    writer.append(["x", "y"], [])
    writer.append(["x"], [])
    assert follower.refresh() == writer.refresh() == ["y", "x"]
    assert list(follower.index["x"]) == ["x"]


def test_a_new_supervisor_replaces_an_orphaned_speaker_and_replays(tmp_path: Path) -> None:
    address, router_address = "127.0.61.4", "127.0.61.5"
    router = BirdRouter(tmp_path, "r3", router_address, R1_AS, [BirdPeer(address, LOCAL_AS)], port=PORT)
    router.start()
    workdir = tmp_path / "exabgp"
    # A supervisor that announces and then dies without stopping its ExaBGP, as a crashed worker would.
    script = (
        "import os, sys\n"
        "from devices.drivers.base import UnicastRoute\n"
        "from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker\n"
        f"p = ExaBgpProcess(sys.argv[1], '{address}', {LOCAL_AS}, '{address}', "
        f"[BgpNeighborConfig('{router_address}', {R1_AS}, port={PORT})])\n"
        "p.start()\n"
        "ExaBgpSpeaker(sys.argv[1]).announce(UnicastRoute('198.51.110.0/24', '192.0.2.99', ('65100:9',)))\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(workdir)], env=env, check=True, timeout=60)
    orphan = int((workdir / "exabgp.pid").read_text())
    wait_for(lambda: "198.51.110.0/24" in router.unicast(4))
    successor = ExaBgpProcess(workdir, address, LOCAL_AS, address, [BgpNeighborConfig(router_address, R1_AS, port=PORT)])
    try:
        successor.start()
        assert successor.pid != orphan
        assert not running(orphan)
        router.wait_established()
        assert wait_for(lambda: router.unicast(4).get("198.51.110.0/24")).communities == ("65100:9",)
        assert ExaBgpSpeaker(workdir).announced() == {UnicastRoute("198.51.110.0/24", "192.0.2.99", ("65100:9",))}
    finally:
        successor.stop()
        router.stop()


def test_a_route_to_a_removed_neighbor_is_withdrawn_without_wedging(
    speaker: ExaBgpSpeaker, process: ExaBgpProcess, routers: tuple[BirdRouter, BirdRouter],
) -> None:
    """After a neighbor leaves the inventory, withdrawing what was announced to it succeeds (nothing to send)."""
    r1, r2 = routers
    to_r1 = UnicastRoute("198.51.108.0/24", "192.0.2.81", neighbors=(R1,))
    to_r2 = UnicastRoute("198.51.109.0/24", "192.0.2.81", neighbors=(R2,))
    speaker.sync({to_r1, to_r2})
    wait_for(lambda: "198.51.108.0/24" in r1.unicast(4) and "198.51.109.0/24" in r2.unicast(4))
    settings_file = process.workdir / "speaker.json"
    original = settings_file.read_text()
    settings = SpeakerSettings.from_json(original)
    without_r1 = dataclasses.replace(settings, neighbors=tuple(n for n in settings.neighbors if n.peer_address != R1))
    settings_file.write_text(without_r1.to_json())
    try:
        client = ExaBgpSpeaker(process.workdir)  # a client that reads the changed settings
        assert client.sync(set()) == (0, 2)
        assert client.announced() == set()
        wait_for(lambda: "198.51.109.0/24" not in r2.unicast(4), what="the route to the remaining neighbor withdrawn")
    finally:
        settings_file.write_text(original)
    speaker.announce(to_r1)  # the journal and R1 agree again, then clean up as every test does
    speaker.withdraw(to_r1)
    wait_for(lambda: "198.51.108.0/24" not in r1.unicast(4))
