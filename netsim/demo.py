"""Start the emulated network of a network file: a Junos emulator per local router, a BIRD receiver per speaker
neighbor on 127.x, and the data plane over them, until SIGTERM or SIGINT.

    python -m netsim.demo netsim/demo-network.yaml --dir var/netsim --collector 127.0.0.1:4739

Reads the YAML directly (no Django), so it can run before the database exists. Routers whose mgmt_host is not
127.0.0.1 and neighbors outside 127.0.0.0/8 are skipped: the demo only ever sends traffic on loopback.

The data plane (`netsim.dataplane`) takes traffic through what the emulated routers carry: each BIRD receiver
stands in for the BGP of the router its speaker neighbor names (`router:`), and the file's centers are reached
by their diversion next hops or by a FlowSpec redirect to their route target. It carries the demo tenants' ordinary
traffic from the start (`background_streams`: far under their detection thresholds, so never an attack), serves
its control socket on `--dataplane-port` (written to `<dir>/dataplane.port` for `manage.py simulate_attack` and
`manage.py demo_scrubbers`), and with `--collector` exports IPFIX from 127.0.0.1 to the flow collector every second.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from netsim.bgplab import BirdPeer, BirdRouter
from netsim.dataplane import DataPlane, EdgeRouter, ScrubbingSite, Stream
from netsim.junos import JunosEmulator
from netsim.junos.server import persistent_host_key

CHANNEL_OF_FAMILY = {"ipv4 unicast": "ipv4", "ipv6 unicast": "ipv6", "ipv4 flow": "flow4", "ipv6 flow": "flow6"}
DATAPLANE_PORT = 4790
PORT_FILE = "dataplane.port"
# One record per stream and second is exported whatever the rate; 1 in 100 keeps the ordinary streams' counts
# smooth from second to second (a few packets per record) and the attacks' far inside a 32-bit count.
SAMPLING = 100
# The demo tenants' verified prefixes (mitigation/management/commands/load_demo.py; a test holds the two equal).
# The simulator cannot read the database, and the network file has no tenants.
DEMO_PREFIXES: dict[str, tuple[str, ...]] = {
    "acme": ("203.0.113.0/24", "2001:db8:100::/48"),
    "globex": ("198.51.100.0/25", "2001:db8:200::/48"),
}
# Ordinary traffic: the busy hosts of each prefix (.10 is where simulate_attack aims by default, so an attack
# there meets real customers' traffic) and their visitors, from shared address space no tenant owns.
BACKGROUND_HOSTS_V4 = (10, 11, 12, 25)
BACKGROUND_HOSTS_V6 = (0x10,)
VISITORS = {4: "100.64.0.0/16", 6: "2001:db8:c000::/40"}
# Per host: web over TCP 443 and QUIC (UDP 443), some 25 Mbit/s and 3,000 packets/s. A /24 with four busy hosts
# carries about 100 Mbit/s: far under the demo's host thresholds (1 Gbit/s, 200,000 packets/s), the prefix-wide
# ones (16 times those for a /24) and the learned-baseline floors (a quarter of the host thresholds), so nothing
# in the background is ever an attack.
WEB_BPS, WEB_PACKET = 20_000_000, 1200
QUIC_BPS, QUIC_PACKET = 5_000_000, 1000
TCP_PSH_ACK = 0x18


def _password(value: str) -> str:
    if value.startswith("env:"):
        return os.environ.get(value[4:], "")
    return value


def emulators_for(network: dict[str, Any], directory: Path) -> list[JunosEmulator]:
    """A (not started) emulator per router managed on 127.0.0.1, with its committed config kept in `directory`."""
    emulators = []
    for router in network.get("routers") or []:
        if str(router.get("mgmt_host")) != "127.0.0.1":
            continue
        emulators.append(JunosEmulator(
            hostname=str(router["name"]), username=str(router.get("username", "sluice")),
            password=_password(str(router.get("password", ""))), port=int(router.get("mgmt_port", 830)),
            state_file=directory / f"{router['name']}.set",
            host_key=persistent_host_key(directory / f"{router['name']}.key"),
        ))
    return emulators


def bring_up_upstreams(network: dict[str, Any], emulators: list[JunosEmulator]) -> None:
    """Each emulated router reports its upstreams' BGP sessions Established, as a healthy network would."""
    by_name = {emulator.hostname: emulator for emulator in emulators}
    for upstream in network.get("upstreams") or []:
        emulator = by_name.get(str(upstream.get("router")))
        if emulator is not None:
            emulator.set_bgp_neighbor(str(upstream["neighbor_address"]), remote_as=int(upstream["asn"]),
                                      state="Established")


def receivers_for(network: dict[str, Any], directory: Path) -> list[BirdRouter]:
    """A (not started) BIRD receiver per speaker neighbor on 127.0.0.0/8; it waits for the speaker to connect."""
    receivers = []
    for speaker in network.get("speakers") or []:
        for neighbor in speaker.get("neighbors") or []:
            address = ipaddress.ip_address(str(neighbor["peer_address"]))
            if address.version != 4 or not address.is_loopback:
                continue
            families = neighbor.get("families") or ["ipv4 unicast", "ipv4 flow"]
            peer = BirdPeer(address=str(speaker["local_address"]), asn=int(speaker["local_as"]), passive=True,
                            channels=tuple(CHANNEL_OF_FAMILY[family] for family in families))
            receivers.append(BirdRouter(directory / "bird", f"{speaker['name']}-{address}", str(address),
                                        int(neighbor["peer_as"]), [peer], port=int(neighbor.get("port", 179))))
    return receivers


def _local_routers(network: dict[str, Any]) -> list[str]:
    return [str(r["name"]) for r in network.get("routers") or [] if str(r.get("mgmt_host")) == "127.0.0.1"]


def dataplane_for(network: dict[str, Any], emulators: list[JunosEmulator], receivers: list[BirdRouter]) -> DataPlane:
    """The data plane over the emulated routers: each with the BIRD receiver of the speaker neighbor that names it
    (`router:`), and the file's centers with their diversion next hops and route targets."""
    bird_of_router: dict[str, BirdRouter] = {}
    by_address = {receiver.address: receiver for receiver in receivers}
    for speaker in network.get("speakers") or []:
        for neighbor in speaker.get("neighbors") or []:
            receiver = by_address.get(str(neighbor.get("peer_address")))
            if receiver is not None and neighbor.get("router"):
                bird_of_router.setdefault(str(neighbor["router"]), receiver)
    routers = [EdgeRouter(emulator.hostname, emulator, bird_of_router.get(emulator.hostname))
               for emulator in emulators]
    centers = [ScrubbingSite(str(center["slug"]), _text(center.get("diversion_next_hop_v4")),
                             _text(center.get("diversion_next_hop_v6")), _text(center.get("route_target")))
               for center in network.get("centers") or []]
    return DataPlane(routers, centers)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def background_streams(network: dict[str, Any],
                       prefixes: dict[str, tuple[str, ...]] | None = None) -> list[Stream]:
    """The demo tenants' ordinary traffic: web and QUIC to a few hosts of each prefix, entering at the network's
    emulated edge routers in turn. Empty when the file has no router on 127.0.0.1."""
    routers = _local_routers(network)
    if not routers:
        return []
    streams: list[Stream] = []
    for tenant, networks in (DEMO_PREFIXES if prefixes is None else prefixes).items():
        for cidr in networks:
            prefix = ipaddress.ip_network(cidr)
            offsets = BACKGROUND_HOSTS_V4 if prefix.version == 4 else BACKGROUND_HOSTS_V6
            for offset in offsets:
                host = prefix[offset]
                ingress = routers[len(streams) // 2 % len(routers)]
                visitors = VISITORS[prefix.version]
                streams += [
                    Stream(f"{tenant}-web-{host}", visitors, str(host), 6, WEB_BPS, ingress, source_port=51000,
                           destination_port=443, packet_size=WEB_PACKET, tcp_flags=TCP_PSH_ACK),
                    Stream(f"{tenant}-quic-{host}", visitors, str(host), 17, QUIC_BPS, ingress, source_port=52000,
                           destination_port=443, packet_size=QUIC_PACKET),
                ]
    return streams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netsim.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="network file (see docs/network-file.md)")
    parser.add_argument("--dir", type=Path, default=Path("var/demo"), help="state files, BIRD configs and sockets")
    parser.add_argument("--dataplane-port", type=int, default=DATAPLANE_PORT,
                        help=f"the data plane's control port on 127.0.0.1 (default {DATAPLANE_PORT})")
    parser.add_argument("--collector", help="export IPFIX to this loopback collector (host:port), e.g. 127.0.0.1:4739")
    parser.add_argument("--sampling", type=int, default=SAMPLING, help=f"exported sampling rate (default {SAMPLING})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    network = yaml.safe_load(args.file.read_text()) or {}
    args.dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulators = emulators_for(network, args.dir.resolve())
    receivers = receivers_for(network, args.dir.resolve())
    port_file = args.dir / PORT_FILE
    started: list[JunosEmulator | BirdRouter | DataPlane] = []
    try:
        for emulator in emulators:
            started.append(emulator.start())
            sys.stdout.write(f"junos {emulator.hostname} on 127.0.0.1:{emulator.port} (user {emulator.username})\n")
        bring_up_upstreams(network, emulators)
        for receiver in receivers:
            receiver.start()
            started.append(receiver)
            sys.stdout.write(f"bird {receiver.name} on {receiver.address}:{receiver.port} as {receiver.local_as}\n")
        plane = dataplane_for(network, emulators, receivers)
        started.append(plane)
        for stream in background_streams(network):
            plane.add_stream(stream)
        host, port = plane.serve_control("127.0.0.1", args.dataplane_port)
        port_file.write_text(f"{port}\n")
        sys.stdout.write(f"data plane control on {host}:{port} ({len(plane.streams)} ordinary streams; "
                         f"port in {port_file})\n")
        if args.collector:
            plane.run(args.collector, fmt="ipfix", sampling=args.sampling, interval=1.0)
            sys.stdout.write(f"data plane exports IPFIX 1:{args.sampling} to {args.collector} every second\n")
        sys.stdout.write("running; stop with Ctrl-C or SIGTERM\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        port_file.unlink(missing_ok=True)
        for element in reversed(started):
            element.stop()
    sys.stdout.write("stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
