"""Start the emulated network of a network file: a Junos emulator per local router, a BIRD receiver per speaker
neighbor on 127.x, until SIGTERM or SIGINT.

    python -m netsim.demo netsim/demo-network.yaml --dir var/demo

Reads the YAML directly (no Django), so it can run before the database exists. Routers whose mgmt_host is not
127.0.0.1 and neighbors outside 127.0.0.0/8 are skipped: the demo only ever sends traffic on loopback.
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
from netsim.junos import JunosEmulator
from netsim.junos.server import persistent_host_key

CHANNEL_OF_FAMILY = {"ipv4 unicast": "ipv4", "ipv6 unicast": "ipv6", "ipv4 flow": "flow4", "ipv6 flow": "flow6"}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netsim.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="network file (see docs/network-file.md)")
    parser.add_argument("--dir", type=Path, default=Path("var/demo"), help="state files, BIRD configs and sockets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    network = yaml.safe_load(args.file.read_text()) or {}
    args.dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulators = emulators_for(network, args.dir.resolve())
    receivers = receivers_for(network, args.dir.resolve())
    started: list[JunosEmulator | BirdRouter] = []
    try:
        for emulator in emulators:
            started.append(emulator.start())
            sys.stdout.write(f"junos {emulator.hostname} on 127.0.0.1:{emulator.port} (user {emulator.username})\n")
        bring_up_upstreams(network, emulators)
        for receiver in receivers:
            receiver.start()
            started.append(receiver)
            sys.stdout.write(f"bird {receiver.name} on {receiver.address}:{receiver.port} as {receiver.local_as}\n")
        sys.stdout.write("running; stop with Ctrl-C or SIGTERM\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        for element in reversed(started):
            element.stop()
    sys.stdout.write("stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
