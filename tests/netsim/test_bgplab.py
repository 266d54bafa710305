"""The BGP lab's BIRD routers: isolated, receive-only, and their RIBs read back as Python values.

A Sluice ExaBGP on 127.0.62.1 (AS 65200) feeds r1 (BIRD waits for the speaker) and r2 (BIRD connects to the
speaker, which listens): raw ExaBGP commands exercise attributes the driver itself never sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.drivers.bgp import BgpNeighborConfig, ExaBgpProcess, ExaBgpSpeaker
from netsim.bgplab import (
    BirdPeer,
    BirdRouter,
    LabError,
    decode_flow_actions,
    numeric_ranges,
    parse_flow_match,
    parse_routes,
    to_unicast,
)
from netsim.polling import wait_for
from tests.support.processes import free_port

SPEAKER = "127.0.62.1"
R1 = "127.0.62.2"
R2 = "127.0.62.3"
LOCAL_AS = 65200
PORT = free_port(R1, R2, "127.0.62.9")  # per process: two test runs side by side never collide
SPEAKER_PORT = free_port(SPEAKER)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]]:
    base = tmp_path_factory.mktemp("lab")
    r1 = BirdRouter(base, "r1", R1, 65201, [BirdPeer(SPEAKER, LOCAL_AS)], port=PORT)
    r2 = BirdRouter(
        base, "r2", R2, 65202, [BirdPeer(SPEAKER, LOCAL_AS, passive=False, port=SPEAKER_PORT)], port=PORT
    )
    neighbors = [
        BgpNeighborConfig(R1, 65201, port=PORT),
        BgpNeighborConfig(R2, 65202, passive=True, port=SPEAKER_PORT),
    ]
    process = ExaBgpProcess(base / "exabgp", SPEAKER, LOCAL_AS, SPEAKER, neighbors)
    r1.start()
    r2.start()
    process.start()
    try:
        r1.wait_established()
        r2.wait_established()
        yield r1, r2, ExaBgpSpeaker(process.workdir)
    finally:
        process.stop()
        r1.stop()
        r2.stop()


def listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the host, from /proc (IPv4 only is enough here)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":
            address, port = local.split(":")
            found.add((str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1])), int(port, 16)))
    return found


def test_config_is_receive_only_and_bound_to_its_address(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, _, _ = lab
    config = r1.config_path.read_text()
    assert "strict bind on;" in config
    assert config.count("export none;") == 4 and "export all" not in config
    assert "kernel" not in config and "protocol device" not in config
    sockets = listening_sockets()
    assert (R1, PORT) in sockets
    assert ("0.0.0.0", PORT) not in sockets
    assert r1.socket_path.exists() and r1.pid_path.exists() and r1.log_path.exists()


def test_both_session_directions_come_up(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, r2, _ = lab
    assert r1.session_state(SPEAKER) == "Established"
    assert r2.session_state(SPEAKER) == "Established"
    assert (SPEAKER, SPEAKER_PORT) in listening_sockets()


def test_unicast_attributes_are_read_back(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, r2, speaker = lab
    answers = speaker.send_raw([
        "announce route 10.62.1.0/24 next-hop 192.0.2.1 community [ 65200:1 65535:666 ] "
        "large-community [ 65200:1:2 ] as-path [ 65200 64999 ]",
        "announce route 2001:db8:620::/48 next-hop 2001:db8::1 community [ 65200:6 ]",
    ])
    assert answers == ["done", "done"]
    for router in (r1, r2):
        route = wait_for(lambda router=router: router.unicast(4).get("10.62.1.0/24"))
        assert route.state == "unreachable"
        assert route.next_hop == "192.0.2.1"
        assert route.communities == ("65200:1", "65535:666")
        assert route.large_communities == ("65200:1:2",)
        assert route.as_path == (65200, 64999)
        assert route.origin == "IGP"
        assert wait_for(lambda router=router: router.unicast(6).get("2001:db8:620::/48")).communities == (
            "65200:6",
        )
    speaker.send_raw(["withdraw route 10.62.1.0/24 next-hop 192.0.2.1", "withdraw route 2001:db8:620::/48"])
    wait_for(lambda: not r1.unicast(4) and not r1.unicast(6) and not r2.unicast(4))


def test_flow_tables_are_read_back(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, _, speaker = lab
    speaker.send_raw([
        "announce flow route destination 10.62.2.1/32 protocol [ =17 ] source-port [ =53 ] "
        "packet-length [ >=512&<=1500 ] rate-limit 1000000",
        "announce flow route destination 2001:db8:621::/64/0 next-header [ =58 ] icmp-type [ =128 ] mark 46",
    ])
    flow = wait_for(lambda: r1.flows_to("10.62.2.1/32"))[0]
    assert flow.components == {"dst": "10.62.2.1/32", "proto": "17", "sport": "53", "length": "512..1500"}
    assert flow.actions == (("rate-limit", 8_000_000),)
    flow6 = wait_for(lambda: r1.flows_to("2001:db8:621::/64"))[0]
    assert flow6.ranges("icmp type") == ((128, 128),)
    assert flow6.actions == (("mark", 46),)
    assert r1.route_count("flowtab4") == 1
    speaker.send_raw([
        "withdraw flow route destination 10.62.2.1/32 protocol [ =17 ] source-port [ =53 ] "
        "packet-length [ >=512&<=1500 ]",
        "withdraw flow route destination 2001:db8:621::/64/0 next-header [ =58 ] icmp-type [ =128 ]",
    ])
    wait_for(lambda: not r1.flows(4) and not r1.flows(6))


def test_restarted_router_gets_the_routes_again(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, _, speaker = lab
    speaker.send_raw(["neighbor 127.0.62.2 announce route 10.62.3.0/24 next-hop 192.0.2.3"])
    wait_for(lambda: "10.62.3.0/24" in r1.unicast(4))
    r1.stop()
    with pytest.raises(LabError):
        r1.cli("show status")
    r1.start()
    r1.wait_established()
    wait_for(lambda: "10.62.3.0/24" in r1.unicast(4))
    speaker.send_raw(["withdraw route 10.62.3.0/24 next-hop 192.0.2.3"])
    wait_for(lambda: not r1.unicast(4))


def test_a_stale_router_of_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    first = BirdRouter(tmp_path, "r9", "127.0.62.9", 65209, [BirdPeer("127.0.62.8", 65208)], port=PORT)
    first.start()
    old_pid = int(first.pid_path.read_text())
    again = BirdRouter(tmp_path, "r9", "127.0.62.9", 65209, [BirdPeer("127.0.62.8", 65208)], port=PORT)
    again.start()
    try:
        assert not Path(f"/proc/{old_pid}").exists() or "zombie" in Path(f"/proc/{old_pid}/status").read_text()
        assert again.session_state("127.0.62.8") in {"Passive", "Idle", "Active", "Connect"}
    finally:
        again.stop()
        first.stop()


def test_bird_errors_and_timeouts_raise_lab_error(lab: tuple[BirdRouter, BirdRouter, ExaBgpSpeaker]) -> None:
    r1, _, _ = lab
    with pytest.raises(LabError, match="refused"):
        r1.cli("show route table nosuchtable")
    with pytest.raises(LabError, match="timed out"):
        r1.wait_established("127.0.62.77", timeout=0.05)  # no session to that address: the lab's wait gives up
    with pytest.raises(AssertionError, match=r"timed out .* nothing"):
        wait_for(lambda: False, timeout=0.05, what="nothing")
    with pytest.raises(ValueError):
        BirdRouter("/tmp", "x", "192.0.2.1", 1, [])


def test_parsers_on_bird_output() -> None:
    text = (
        "Table master4:\n"
        "10.1.0.0/24          unreachable [exa 10:47:18.329 from 127.0.99.1] * (100) [AS65001i]\n"
        "\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 65001 65001\n\tBGP.next_hop: 192.0.2.1\n"
        "\tBGP.local_pref: 100\n\tBGP.community: (65001,100) (65535,666)\n"
        "                     unreachable [exb 10:47:19.000 from 127.0.99.3] (100) [AS65003i]\n"
        "\tBGP.as_path: 65003\n\tBGP.next_hop: 192.0.2.3\n"
    )
    routes = [to_unicast(*r) for r in parse_routes(text)]
    assert [(r.prefix, r.protocol, r.next_hop) for r in routes] == [
        ("10.1.0.0/24", "exa", "192.0.2.1"),
        ("10.1.0.0/24", "exb", "192.0.2.3"),
    ]
    assert routes[0].communities == ("65001:100", "65535:666") and routes[0].local_pref == 100
    match = "flow4 { dst 10.2.0.1/32; src 10.3.0.0/16; proto 6,17; dport 80,1000..2000; icmp type 8; }"
    assert parse_flow_match(match) == {
        "dst": "10.2.0.1/32", "src": "10.3.0.0/16", "proto": "6,17", "dport": "80,1000..2000", "icmp type": "8",
    }
    assert numeric_ranges("80,1000..2000") == ((80, 80), (1000, 2000))
    assert decode_flow_actions([
        "(generic, 0x80060000, 0x0)", "(generic, 0x80060000, 0x47f42400)", "(generic, 0x8008fde9, 0x64)",
        "(generic, 0x80090000, 0xa)",
    ]) == (("discard", None), ("rate-limit", 1_000_000), ("redirect", "65001:100"), ("mark", 10))
