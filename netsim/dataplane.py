"""An emulated data plane: traffic toward the provider, put through what the edge routers carry.

    plane = DataPlane([EdgeRouter("edge1", emulator, bird)], [ScrubbingSite("fra1", "192.0.2.50", redirect_target="65000:666")])
    plane.add_stream(Stream("dns-amp", "198.51.100.0/24", "203.0.113.10", 17, 2_000_000_000, "edge1", source_port=53,
                            packet_size=1400, attack=True))
    plane.tick(1.0)                      # or plane.run("127.0.0.1:2055") to tick and export every second
    address = plane.serve_control()      # JSON lines, see below

Streams of traffic (`Stream`) enter at an edge router. Each `tick(seconds)` takes every stream through its ingress
router as the router's configuration and BGP say: first the FlowSpec filter (the committed `routing-options flow
route` entries and the FlowSpec routes its BIRD receiver holds; the route with the most specific destination that
matches wins, a simplification of RFC 8955's order), then diversion (a static route in a routing instance, or a
unicast route in the BIRD receiver, whose next hop is a scrubbing center's diversion next hop; the longest prefix
holding the destination wins). Discard drops; rate-limit passes up to its rate and drops the rest; redirect hands
the traffic to the center whose route target it names; mark and routes without action pass. A center drops the
attack streams' part of what reaches it and returns the rest, clean.

What is counted, all from the rates and the tick's length (never canned):
- per router, in the Junos emulator: each FlowSpec term's counter and a rate-limit term's policer, so the driver
  reads them with `get-firewall-filter-information` as it would from a router;
- per center and diverted prefix: received, dropped and clean bits/s and packets/s over the last tick, and totals;
- per stream: offered and delivered, the same way.

`run()` exports, every `interval` seconds, the traffic as the network shows it after the filters (what was
delivered, including the centers' clean traffic coming back) as sampled flow records to a loopback collector. In
IPFIX and NetFlow v9 the traffic a FlowSpec rule dropped is exported too, marked with forwardingStatus (element 89)
"dropped" (reason ACL drop for discard, policer for what a rate-limit took), as a router's exporter does; the
collector leaves such records out of its rates, so its per-prefix rates are the delivered ones. Traffic a center
dropped is not exported (centers export nothing here).

Control: JSON lines over a loopback TCP socket (`serve_control()`), one request and one answer per line, with
`dataplane_request(address, message)` as the client:

    {"op": "add_stream", "stream": {"name": "dns-amp", "source": "198.51.100.0/24", "destination": "203.0.113.10",
        "protocol": 17, "source_port": 53, "destination_port": 40000, "packet_size": 1400, "bps": 2000000000,
        "attack": true, "ingress": "edge1"}}                  adds or replaces (by name) -> {"ok": true}
    {"op": "remove_stream", "name": "dns-amp"}               -> {"ok": true, "removed": true}
    {"op": "state"}  -> {"ok": true, "streams": [{"name", "attack", "ingress", "offered_bps", "offered_pps",
        "delivered_bps", "delivered_pps"}, ...], "centers": {"<slug>": {"<prefix>": {"received_bps",
        "received_pps", "dropped_bps", "dropped_pps", "clean_bps", "clean_pps", "received_bytes",
        "received_packets", "dropped_bytes", "dropped_packets", "clean_bytes", "clean_packets"}}}}
    anything wrong   -> {"ok": false, "error": "<why>"}

Stream fields beyond the example: `tcp_flags` (bits, e.g. 2 for SYN) and `fragment` (non-first fragments).
Rates are bits per second; `*_bps`/`*_pps` cover the last tick, `*_bytes`/`*_packets` everything since start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from netsim.bgplab import BirdFlow, BirdRouter
from netsim.flowgen.encoders import DROPPED_BY_ACL, DROPPED_BY_POLICER, FORWARDED, encoder_for
from netsim.flowgen.records import FlowRecord
from netsim.flowgen.stream import parse_target
from netsim.junos.server import JunosEmulator
from netsim.junos.state import FRAGMENT_BITS, FlowRoute

logger = logging.getLogger(__name__)

PORT_PROTOCOLS = frozenset({6, 17, 132})
_STATIC = re.compile(r"set routing-instances \S+ routing-options static route (\S+) next-hop (\S+)$")
_BIRD_FLAGS = re.compile(r"(!?)0x([0-9a-fA-F]+)/0x([0-9a-fA-F]+)")
_BIRD_FRAGMENT = re.compile(r"(!*)([a-z_]+)")
_BIRD_RANGES = {"proto": "protocols", "next header": "protocols", "port": "ports", "dport": "destination_ports",
                "sport": "source_ports", "icmp type": "icmp_types", "icmp code": "icmp_codes",
                "length": "packet_lengths"}


class DataPlaneError(Exception):
    """A control request failed, or the data plane refused a value."""


@dataclass(frozen=True)
class Stream:
    """Traffic of the world toward the provider: one kind of packet at a constant rate, entering at one router.

    `source` is an address or a prefix (spoofed senders spread over it); a FlowSpec source component matches the
    stream only when it holds all of `source`, so a stream is never split. `packet_size` is the IP length, what
    FlowSpec's packet-length component and the flow records' byte counts measure.
    """

    name: str
    source: str
    destination: str
    protocol: int
    bps: int
    ingress: str
    source_port: int = 0
    destination_port: int = 0
    packet_size: int = 1000
    attack: bool = False
    tcp_flags: int = 0
    fragment: bool = False

    def __post_init__(self) -> None:
        source = ipaddress.ip_network(self.source, strict=False)
        destination = ipaddress.ip_address(self.destination)
        if source.version != destination.version:
            raise DataPlaneError(f"stream {self.name}: source and destination are of different families")
        checks = ((self.protocol, 0, 255), (self.source_port, 0, 65535), (self.destination_port, 0, 65535),
                  (self.packet_size, 20, 65535), (self.tcp_flags, 0, 255), (self.bps, 0, 10**13))
        if not self.name or any(not isinstance(v, int) or not low <= v <= high for v, low, high in checks):
            raise DataPlaneError(f"stream {self.name!r}: name, rate, protocol, ports, size and flags must be "
                                 "given, as whole numbers in range")

    @property
    def pps(self) -> float:
        return self.bps / (8 * self.packet_size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stream:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise DataPlaneError(f"unknown stream fields {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise DataPlaneError(f"stream is not valid: {error}") from error


@dataclass(frozen=True)
class ScrubbingSite:
    """A scrubbing center as the data plane sees it: reached by its diversion next hops, or by a FlowSpec redirect
    to its route target ("ASN:NN"). It drops attack traffic and returns the rest."""

    slug: str
    next_hop_v4: str | None = None
    next_hop_v6: str | None = None
    redirect_target: str | None = None


@dataclass
class EdgeRouter:
    """An edge router: the Junos emulator holding its configuration and counters, and optionally the BIRD
    receiver standing in for its BGP (FlowSpec and unicast routes from Sluice's speaker)."""

    name: str
    emulator: JunosEmulator
    bird: BirdRouter | None = None


@dataclass
class Meter:
    """Traffic over the last tick (bits/s, packets/s) and since the start (bytes, packets)."""

    bps: float = 0.0
    pps: float = 0.0
    bytes: float = 0.0
    packets: float = 0.0

    def add(self, bps: float, pps: float, seconds: float) -> None:
        self.bps += bps
        self.pps += pps
        self.bytes += bps * seconds / 8
        self.packets += pps * seconds

    def restart(self) -> None:
        self.bps = self.pps = 0.0


@dataclass
class PrefixMeters:
    """A center's figures for one diverted prefix."""

    received: Meter = field(default_factory=Meter)
    dropped: Meter = field(default_factory=Meter)
    clean: Meter = field(default_factory=Meter)

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind in ("received", "dropped", "clean"):
            meter: Meter = getattr(self, kind)
            out |= {f"{kind}_bps": meter.bps, f"{kind}_pps": meter.pps, f"{kind}_bytes": meter.bytes,
                    f"{kind}_packets": meter.packets}
        return out


@dataclass
class StreamMeters:
    """A stream's traffic: offered, delivered, and what a FlowSpec rule dropped (by discard or by a policer)."""

    offered: Meter = field(default_factory=Meter)
    delivered: Meter = field(default_factory=Meter)
    discarded: Meter = field(default_factory=Meter)
    policed: Meter = field(default_factory=Meter)

    def restart(self) -> None:
        for meter in (self.offered, self.delivered, self.discarded, self.policed):
            meter.restart()


@dataclass(frozen=True)
class RouterView:
    """What one router applies to traffic this tick: FlowSpec routes in evaluation order, and diversions."""

    routes: tuple[FlowRoute, ...]
    diversions: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ScrubbingSite], ...]


def _within(value: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= value <= high for low, high in ranges)


def route_matches(route: FlowRoute, stream: Stream) -> bool:
    """Whether every match component of the route holds for the stream's packets.

    Streams carry no ICMP type or code, so a route matching on either matches no stream.
    """
    destination = ipaddress.ip_address(stream.destination)
    if route.family != destination.version or route.icmp_types or route.icmp_codes:
        return False
    if route.destination and destination not in ipaddress.ip_network(route.destination):
        return False
    if route.source:
        source = ipaddress.ip_network(stream.source, strict=False)
        if not source.subnet_of(ipaddress.ip_network(route.source)):  # type: ignore[arg-type]
            return False
    ported = stream.protocol in PORT_PROTOCOLS and not stream.fragment
    for ranges, value in ((route.destination_ports, stream.destination_port),
                          (route.source_ports, stream.source_port)):
        if ranges and not (ported and _within(value, ranges)):
            return False
    if route.ports and not (ported and (_within(stream.source_port, route.ports)
                                        or _within(stream.destination_port, route.ports))):
        return False
    if route.protocols and not _within(stream.protocol, route.protocols):
        return False
    if route.packet_lengths and not _within(stream.packet_size, route.packet_lengths):
        return False
    if route.tcp_flags and not (stream.protocol == 6 and any(stream.tcp_flags & bits for bits in route.tcp_flags)):
        return False
    fragment_bits = FRAGMENT_BITS["is-fragment"] if stream.fragment else 0
    return not route.fragments or any(fragment_bits & bits for bits in route.fragments)


def _specificity(route: FlowRoute) -> tuple[int, str]:
    length = ipaddress.ip_network(route.destination).prefixlen if route.destination else -1
    return -length, route.term_name


def flow_route_from_bird(flow: BirdFlow) -> FlowRoute | None:
    """A FlowSpec route BIRD holds, as the router would install it; None when a component cannot be read.

    RFC 8955 traffic-rate is bytes per second (a float); `netsim.bgplab.decode_flow_actions` already multiplied
    it by 8, so the rate here is bits per second, like the Junos configuration's `then rate-limit`.
    """
    values: dict[str, Any] = {}
    try:
        for component, name in _BIRD_RANGES.items():
            ranges = flow.ranges(component)
            if ranges:
                values[name] = tuple(sorted(values.get(name, ()) + ranges))
    except ValueError:
        logger.warning("flow %s has a component the data plane cannot read; ignored", flow.match)
        return None
    for component, name in (("tcp flags", "tcp_flags"), ("fragment", "fragments")):
        if component in flow.components:
            bits = _bird_bitmask(flow.components[component], fragments=component == "fragment")
            if bits is None:
                logger.warning("flow %s tests flags the data plane cannot evaluate; ignored", flow.match)
                return None
            values[name] = bits
    for action, argument in flow.actions:
        if action == "discard" or (action == "rate-limit" and not argument):
            values["action"] = "discard"
        elif action == "rate-limit":
            values.update(action="rate-limit", rate_bps=int(argument))  # type: ignore[call-overload]
        elif action == "redirect":
            values.update(action="redirect", redirect_target=str(argument))
        elif action == "mark":
            values["action"] = "mark"
        else:
            continue
        break
    destination = flow.destination.split()[0] if flow.destination else None
    source = flow.source.split()[0] if flow.source else None
    return FlowRoute(destination, source, **values)


def _bird_bitmask(text: str, *, fragments: bool) -> tuple[int, ...] | None:
    """BIRD's TCP flags or fragment component as bits any one of which must be set, or None for a test this model
    cannot hold (a flag that must be clear, several flags that must all be set, operands joined by `&&`).

    BIRD prints an operand as `[!]value/mask` for TCP flags (`!0x0/0x2`: not all of the mask clear, i.e. SYN set)
    and as `!!is_fragment` for fragments (the operand's and the bit's negation: the bit set); `||` joins operands.
    """
    if "&&" in text:
        return None
    bits = []
    for operand in (part.strip() for part in text.split("||")):
        if fragments:
            word = _BIRD_FRAGMENT.fullmatch(operand)
            bit = FRAGMENT_BITS.get(word.group(2).replace("_", "-")) if word else None
            if word is None or bit is None or len(word.group(1)) % 2:
                return None
            bits.append(bit)
            continue
        flags = _BIRD_FLAGS.fullmatch(operand)
        if flags is None:
            return None
        negated, value, mask = flags.group(1) == "!", int(flags.group(2), 16), int(flags.group(3), 16)
        if not ((negated and value == 0) or (not negated and value == mask and mask & (mask - 1) == 0)):
            return None
        bits.append(mask)
    return tuple(sorted(bits))


class _Carry:
    """Whole units out of fractional amounts, keeping the remainders, so counts add up exactly over ticks."""

    def __init__(self) -> None:
        self._rest: dict[tuple[object, ...], float] = {}

    def take(self, key: tuple[object, ...], amount: float) -> int:
        total = self._rest.get(key, 0.0) + amount
        whole = int(total)
        self._rest[key] = total - whole
        return whole


class DataPlane:
    """The emulated network's forwarding: streams through routers' filters and diversions to scrubbing centers.

    Side effects: each tick adds to the routers' FlowSpec counters in their Junos emulators and copies the FlowSpec
    routes of each router's BIRD receiver into its emulator (so the router shows their counters). `run()` sends
    flow records to a loopback collector; `serve_control()` listens on a loopback TCP port.
    """

    def __init__(self, routers: Iterable[EdgeRouter], centers: Iterable[ScrubbingSite] = ()) -> None:
        self.routers = {router.name: router for router in routers}
        self.centers = {center.slug: center for center in centers}
        self.streams: dict[str, Stream] = {}
        self.stream_meters: dict[str, StreamMeters] = {}
        self.center_meters: dict[str, dict[str, PrefixMeters]] = {slug: {} for slug in self.centers}
        self._lock = threading.RLock()
        self._carry = _Carry()
        self._ticks = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._control: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def add_stream(self, stream: Stream) -> None:
        """Add a stream, or replace the one of that name (its totals start again)."""
        with self._lock:
            self.streams[stream.name] = stream
            self.stream_meters[stream.name] = StreamMeters()

    def remove_stream(self, name: str) -> bool:
        with self._lock:
            self.stream_meters.pop(name, None)
            return self.streams.pop(name, None) is not None

    def tick(self, seconds: float) -> None:
        """Forward `seconds` of every stream's traffic and count it. Reads each BIRD receiver (its CLI)."""
        with self._lock:
            views = {name: self._view(router) for name, router in self.routers.items()}
            for meters in self.stream_meters.values():
                meters.restart()
            for prefixes in self.center_meters.values():
                for meter in prefixes.values():
                    for kind in (meter.received, meter.dropped, meter.clean):
                        kind.restart()
            for stream in self.streams.values():
                view = views.get(stream.ingress)
                if view is None:
                    logger.warning("stream %s enters at unknown router %s; dropped", stream.name, stream.ingress)
                    continue
                self._forward(stream, self.routers[stream.ingress], view, seconds)
            self._ticks += 1

    def _view(self, router: EdgeRouter) -> RouterView:
        unicast: list[tuple[str, str | None]] = []
        if router.bird is not None:
            learned = [flow_route_from_bird(flow) for family in (4, 6) for flow in router.bird.flows(family).values()]
            router.emulator.learn_flow_routes([route for route in learned if route is not None])
            unicast = [(r.prefix, r.next_hop) for family in (4, 6) for r in router.bird.unicast(family).values()]
        for line in router.emulator.committed_set():
            static = _STATIC.match(line)
            if static:
                unicast.append((static.group(1), static.group(2)))
        hops = {hop: center for center in self.centers.values()
                for hop in (center.next_hop_v4, center.next_hop_v6) if hop}
        diversions = sorted(((ipaddress.ip_network(prefix), hops[hop]) for prefix, hop in unicast if hop in hops),
                            key=lambda item: -item[0].prefixlen)
        routes = sorted(router.emulator.installed_flow_routes().values(), key=_specificity)
        return RouterView(tuple(routes), tuple(diversions))

    def _count(self, router: EdgeRouter, route: FlowRoute, stream: Stream, passed_bps: float, policed_bps: float,
               seconds: float) -> None:
        """Add whole packets to the term's counter (and policer); bytes are packets times the packet size."""
        key = (router.name, route.filter_name, route.term_name, stream.name)
        packets = self._carry.take((*key, "counter"), passed_bps * seconds / (8 * stream.packet_size))
        policed = self._carry.take((*key, "policer"), policed_bps * seconds / (8 * stream.packet_size))
        router.emulator.count_flow(route, packets=packets, octets=packets * stream.packet_size,
                                   policed_packets=policed, policed_octets=policed * stream.packet_size)

    def _forward(self, stream: Stream, router: EdgeRouter, view: RouterView, seconds: float) -> None:
        """One stream through its ingress router's FlowSpec filter, then diversion, then a center."""
        meters = self.stream_meters[stream.name]
        meters.offered.add(stream.bps, stream.pps, seconds)
        passed, center, prefix = self._filter(stream, router, view, seconds)
        destination = ipaddress.ip_address(stream.destination)
        if passed and center is None:
            diverted = next(((n, c) for n, c in view.diversions if destination in n), None)
            if diverted is not None:
                prefix, center = str(diverted[0]), diverted[1]
        if passed and center is not None:
            figures = self.center_meters[center.slug].setdefault(prefix, PrefixMeters())
            pps = passed / (8 * stream.packet_size)
            figures.received.add(passed, pps, seconds)
            (figures.dropped if stream.attack else figures.clean).add(passed, pps, seconds)
            if stream.attack:
                passed = 0.0
        meters.delivered.add(passed, passed / (8 * stream.packet_size), seconds)

    def _filter(self, stream: Stream, router: EdgeRouter, view: RouterView,
                seconds: float) -> tuple[float, ScrubbingSite | None, str]:
        """The first matching FlowSpec route's action: the bits/s it lets through, and the center (with the
        route's destination as the diverted prefix) a redirect sends them to."""
        passed = float(stream.bps)
        route = next((r for r in view.routes if route_matches(r, stream)), None)
        if route is None:
            return passed, None, ""
        meters = self.stream_meters[stream.name]
        if route.action == "discard":  # the term's counter counts all it dropped
            self._count(router, route, stream, passed, 0.0, seconds)
            meters.discarded.add(passed, stream.pps, seconds)
            return 0.0, None, ""
        dropped = max(0.0, passed - float(route.rate_bps or 0)) if route.action == "rate-limit" else 0.0
        self._count(router, route, stream, passed - dropped, dropped, seconds)
        meters.policed.add(dropped, dropped / (8 * stream.packet_size), seconds)
        if route.action == "redirect":
            center = next((c for c in self.centers.values() if c.redirect_target == route.redirect_target), None)
            return passed, center, str(route.destination)
        return passed - dropped, None, ""

    def state(self) -> dict[str, Any]:
        """Streams with their offered and delivered rates; centers with per-prefix figures (see module doc)."""
        with self._lock:
            streams = [{"name": s.name, "attack": s.attack, "ingress": s.ingress,
                        "offered_bps": self.stream_meters[s.name].offered.bps,
                        "offered_pps": self.stream_meters[s.name].offered.pps,
                        "delivered_bps": self.stream_meters[s.name].delivered.bps,
                        "delivered_pps": self.stream_meters[s.name].delivered.pps}
                       for s in sorted(self.streams.values(), key=lambda s: s.name)]
            centers = {slug: {prefix: meters.as_dict() for prefix, meters in sorted(prefixes.items())}
                       for slug, prefixes in self.center_meters.items()}
        return {"streams": streams, "centers": centers}

    def records(self, seconds: float, sampling: int = 1, kind: str = "delivered") -> list[FlowRecord]:
        """Flow records for the last tick's `kind` of traffic (delivered, discarded or policed), `seconds` long,
        sampled 1 in `sampling`.

        One record per stream; its counts times `sampling` are the stream's packets and bytes (remainders carry to
        the next tick), so a collector that multiplies by the sampling rate sees the rates. A stream from a prefix
        is reported from one of its addresses, a different one each tick.
        """
        out = []
        with self._lock:
            for stream in self.streams.values():
                meter: Meter = getattr(self.stream_meters[stream.name], kind)
                packets = self._carry.take(("export", kind, stream.name), meter.pps * seconds / sampling)
                if packets == 0:
                    continue
                network = ipaddress.ip_network(stream.source, strict=False)
                source = network[self._ticks % network.num_addresses]
                out.append(FlowRecord(
                    str(source), stream.destination, stream.protocol, stream.source_port, stream.destination_port,
                    stream.tcp_flags, stream.fragment, packets * stream.packet_size, packets))
        return out

    def export_once(self, sock: socket.socket, target: tuple[str, int], encoder: Any, fmt: str,
                    seconds: float) -> int:
        """Tick, then send the records of the delivered traffic (and, with an encoder that sends forwardingStatus,
        of what FlowSpec rules dropped); returns how many records were sent."""
        self.tick(seconds)
        batches = []
        if getattr(encoder, "forwarding_status", False):
            batches += [(DROPPED_BY_ACL, self.records(seconds, encoder.sampling, "discarded")),
                        (DROPPED_BY_POLICER, self.records(seconds, encoder.sampling, "policed"))]
        batches.append((FORWARDED, self.records(seconds, encoder.sampling)))
        sent = 0
        for status, records in batches:
            if fmt == "sflow":  # an sFlow record is one sampled packet
                records = [dataclasses.replace(r, bytes=r.bytes // r.packets, packets=1)
                           for r in records for _ in range(r.packets)]
            datagrams = encoder.encode(records, status) if status != FORWARDED else encoder.encode(records)
            for datagram in datagrams:
                sock.sendto(datagram, target)
            sent += len(records)
        return sent

    def run(self, target: str, *, fmt: str = "ipfix", sampling: int = 100, interval: float = 1.0) -> None:
        """In a background thread until stop(): every `interval` s, tick and export to `target` (loopback only)."""
        host, port = parse_target(target)
        templated = {"forwarding_status": True} if fmt in ("ipfix", "netflow9") else {}
        encoder = encoder_for(fmt, sampling=sampling, **templated)

        def loop() -> None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                start = time.monotonic()
                ticks = 0
                while not self._stop.wait(max(0.0, start + (ticks + 1) * interval - time.monotonic())):
                    ticks += 1
                    try:
                        self.export_once(sock, (host, port), encoder, fmt, interval)
                    except Exception:  # a router or BIRD gone for a moment must not end the loop
                        logger.exception("data plane tick failed")

        self._spawn(loop, "dataplane-run")

    def serve_control(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen for JSON-line requests on a loopback TCP port; returns the bound (host, port)."""
        if not ipaddress.ip_address(host).is_loopback:
            raise DataPlaneError(f"the control socket only listens on loopback, not {host}")
        plane = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    if line.strip():
                        self.wfile.write(json.dumps(plane.handle(line)).encode() + b"\n")

        server_class = type("Server", (socketserver.ThreadingTCPServer,), {
            "allow_reuse_address": True, "daemon_threads": True,
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self._control = server_class((host, port), Handler)
        self._spawn(self._control.serve_forever, "dataplane-control")
        bound = self._control.server_address
        return str(bound[0]), int(bound[1])

    def handle(self, line: bytes | str) -> dict[str, Any]:
        """Answer one control request (see the module docstring)."""
        try:
            message = json.loads(line)
            op = message.get("op") if isinstance(message, dict) else None
            if op == "add_stream":
                self.add_stream(Stream.from_dict(message.get("stream") or {}))
                return {"ok": True}
            if op == "remove_stream":
                return {"ok": True, "removed": self.remove_stream(str(message.get("name")))}
            if op == "state":
                return {"ok": True, **self.state()}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except (ValueError, DataPlaneError) as error:
            return {"ok": False, "error": str(error)}

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """End the export loop and the control server."""
        self._stop.set()
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()


def dataplane_request(address: str | tuple[str, int], message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one control request to a data plane (`"127.0.0.1:port"` or a (host, port) pair, loopback only) and
    return its answer. Raises DataPlaneError when the data plane answers `ok: false`, OSError when unreachable."""
    host, port = parse_target(address) if isinstance(address, str) else parse_target(f"[{address[0]}]:{address[1]}")
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(json.dumps(message).encode() + b"\n")
        with connection.makefile("rb") as answers:
            answer = json.loads(answers.readline() or b"{}")
    if not answer.get("ok"):
        raise DataPlaneError(answer.get("error") or "no answer")
    return dict(answer)
