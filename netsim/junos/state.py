"""The state of one emulated Junos router: configuration databases, lock, commit history, clock and faults.

Everything that NETCONF sessions share lives here behind one lock, so that the RPC handlers (rpc.py) stay pure
functions of (state, session, request). Tests reach the same object through JunosEmulator to set operational
data (BGP neighbors, interface counters), add validators and inject faults.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from netsim.junos.config import ConfigTree

MAX_ROLLBACKS = 50
Validator = Callable[[list[str]], str | None]
Ranges = tuple[tuple[int, int], ...]

FLOWSPEC_FILTERS = {4: "__flowspec_default_inet__", 6: "__flowspec_default_inet6__"}
# RFC 8955 section 4.2.2.9 and 4.2.2.12 bit values, as Junos prints them in term names (`tcp-flag:02`, `frag:02`).
TCP_FLAG_BITS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "push": 0x08, "ack": 0x10, "urgent": 0x20, "ece": 0x40,
                 "cwr": 0x80}
FRAGMENT_BITS = {"dont-fragment": 0x01, "is-fragment": 0x02, "first-fragment": 0x04, "last-fragment": 0x08}
_RANGE_KEYWORDS = {"protocol": "protocols", "port": "ports", "destination-port": "destination_ports",
                   "source-port": "source_ports", "icmp-type": "icmp_types", "icmp-code": "icmp_codes",
                   "packet-length": "packet_lengths"}
_RATE_UNITS = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class EmulatorClock:
    """Emulated wall-clock time: real time times `scale`, plus whatever tests `advance()` by.

    Commit-confirmed timeouts are minutes long; tests move this clock instead of sleeping.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._start_wall = time.time()
        self._start_mono = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._start_wall + (time.monotonic() - self._start_mono) * self.scale + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@dataclass
class Revision:
    """One committed configuration, as `show system commit` lists it."""

    tree: ConfigTree
    when: float
    user: str
    client: str
    log: str = ""
    sequence: int = 0


@dataclass
class BgpNeighbor:
    """Operational state of one BGP peer as `show bgp neighbor` reports it."""

    address: str
    remote_as: int
    local_as: int = 65000
    state: str = "Established"
    description: str = ""
    instance: str = "master"
    local_address: str = "192.0.2.254"
    router_id: str = "192.0.2.254"
    peer_id: str = ""
    received_prefixes: int = 0
    accepted_prefixes: int = 0
    advertised_prefixes: int = 0
    elapsed_seconds: int = 3600
    table: str = "inet.0"


@dataclass
class InterfaceCounters:
    """Traffic and error counters of one physical interface (`show interfaces extensive`)."""

    name: str
    rx_octets: int = 0
    tx_octets: int = 0
    rx_unicast_packets: int = 0
    tx_unicast_packets: int = 0
    rx_multicast_packets: int = 0
    tx_multicast_packets: int = 0
    rx_broadcast_packets: int = 0
    tx_broadcast_packets: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_discards: int = 0
    tx_discards: int = 0
    oper_up: bool = True
    description: str = ""


@dataclass
class Faults:
    """Failures tests switch on. Each describes what a real router or network did to someone once."""

    refuse_login: bool = False
    drop_session_on_commit: bool = False
    commit_delay: float = 0.0
    commit_error: str | None = None
    load_error: str | None = None
    commit_mangler: Callable[[list[str]], list[str]] | None = None
    # RPC names (e.g. "commit-configuration", or "*" for any) the router receives and then never answers.
    hang_rpcs: frozenset[str] = frozenset()


@dataclass
class PendingConfirm:
    """A `commit confirmed` waiting for its confirming commit; at `deadline` the router rolls back."""

    deadline: float
    restore: ConfigTree
    minutes: int


@dataclass
class Session:
    """One NETCONF session; `close` drops the SSH connection (used for faults and <kill-session>)."""

    session_id: int
    username: str
    close: Callable[[], None] = field(default=lambda: None)
    connected: Callable[[], bool] = field(default=lambda: True)
    alive: bool = True
    started: float = field(default_factory=time.time)


class PhantomSession(Session):
    """A session that only exists to hold the configuration lock, like an operator in `configure exclusive`."""


@dataclass(frozen=True)
class FlowRoute:
    """A FlowSpec route as the router installs it in its FlowSpec filter: match components, one action.

    Ranges are inclusive; `tcp_flags` and `fragments` are bitmask operands, any one of which matches
    ((data AND value) != 0, RFC 8955's bitmask without the match bit). `destination` and `source` are
    networks, None for "any". `action` is discard, rate-limit (`rate_bps`, bits per second), redirect
    (`redirect_target`, "ASN:NN"), mark, or accept (a route with no action Junos applies).
    """

    destination: str | None
    source: str | None = None
    protocols: Ranges = ()
    ports: Ranges = ()
    destination_ports: Ranges = ()
    source_ports: Ranges = ()
    icmp_types: Ranges = ()
    icmp_codes: Ranges = ()
    tcp_flags: tuple[int, ...] = ()
    packet_lengths: Ranges = ()
    fragments: tuple[int, ...] = ()
    action: str = "accept"
    rate_bps: int | None = None
    redirect_target: str | None = None

    @property
    def family(self) -> int:
        address = self.destination or self.source
        return ipaddress.ip_network(address).version if address else 4

    @property
    def filter_name(self) -> str:
        return FLOWSPEC_FILTERS[self.family]

    @property
    def term_name(self) -> str:
        """The name Junos gives the route's term, counter and (without rate prefix) policer.

        Checked against `show firewall filter __flowspec_default_inet__` output published in public repositories
        (router_flowspec_parser's tests, a Kentik kagent write-up, FoD's rule naming, Juniper blog captures):
        `203.0.113.10,*` (a v4 host without /32, `*` for no source), `0/0,*,proto=17,port=445`,
        `134.34.2.128/25,*,proto=17,dstport>=1026&<=65499,srcport>=1026&<=65499`, several values as
        `dstport=40,=50,=60,>=70&<=80`, `39.244.131.7,*,dstport=443,tcp-flag:18,len=180`, `proto=17,frag:02`,
        `icmp-type=8`, and v6 as `3001:4:b::10/128,3001:1:a::10/128` (the length kept). Components follow the
        RFC 8955 type order, as every sample does. Assumed, not seen: `icmp-code=N`, `port=` for a v6 next
        header too, the `:` operator for each configured TCP flag (one operand per flag, like each `frag:`
        value), and a range printed as `>=lo&<=hi` even when it starts at 0 or ends at the maximum.
        """
        parts = [_term_address(self.destination), _term_address(self.source)]
        for keyword, ranges in (("proto", self.protocols), ("port", self.ports), ("dstport", self.destination_ports),
                                ("srcport", self.source_ports), ("icmp-type", self.icmp_types),
                                ("icmp-code", self.icmp_codes)):
            if ranges:
                parts.append(keyword + _term_ranges(ranges))
        if self.tcp_flags:
            parts.append("tcp-flag" + ",".join(f":{bits:02x}" for bits in self.tcp_flags))
        if self.packet_lengths:
            parts.append("len" + _term_ranges(self.packet_lengths))
        if self.fragments:
            parts.append("frag" + ",".join(f":{bits:02x}" for bits in self.fragments))
        return ",".join(parts)

    @property
    def policer_name(self) -> str | None:
        """A rate-limit route's policer: the rate in kbit/s, `K_`, the term name (seen: `40K_...`, `6291K_...`).

        Only the K unit was seen in captures; larger rates are assumed to stay in K as well.
        """
        if self.action != "rate-limit" or self.rate_bps is None:
            return None
        return f"{self.rate_bps // 1000}K_{self.term_name}"


def _term_address(prefix: str | None) -> str:
    if prefix is None:
        return "*"
    network = ipaddress.ip_network(prefix, strict=False)
    if network.version == 4 and network.prefixlen == 0:
        return "0/0"
    if network.version == 4 and network.prefixlen == 32:
        return str(network.network_address)
    return str(network)


def _term_ranges(ranges: Ranges) -> str:
    return ",".join(f"={low}" if low == high else f">={low}&<={high}" for low, high in sorted(set(ranges)))


def _config_range(value: str) -> tuple[int, int]:
    low, _, high = value.partition("-")
    return int(low), int(high or low)


def _config_rate(value: str) -> int:
    unit = _RATE_UNITS.get(value[-1:].lower(), 1)
    return int(float(value.rstrip("kKmMgG")) * unit)


def flow_route_from_config(route: dict[str, dict[str, dict[str, object]]]) -> FlowRoute:
    """A `routing-options flow route <name>` entry of a configuration tree as the route Junos installs.

    Raises ValueError (or KeyError) for a route Junos would not install the way it reads.
    """
    match, then = route.get("match", {}), route.get("then", {})
    values: dict[str, object] = {
        name: tuple(sorted(_config_range(v) for v in match.get(keyword, {}))) for keyword, name in _RANGE_KEYWORDS.items()
    }
    values["tcp_flags"] = tuple(sorted(TCP_FLAG_BITS[flag] for flag in match.get("tcp-flags", {})))
    values["fragments"] = tuple(sorted(FRAGMENT_BITS[flag] for flag in match.get("fragment", {})))
    destination = next(iter(match.get("destination", {})), None)
    source = next(iter(match.get("source", {})), None)
    if "discard" in then:
        values["action"] = "discard"
    elif "rate-limit" in then:
        rate = _config_rate(next(iter(then["rate-limit"])))
        values.update(action="discard" if rate == 0 else "rate-limit", rate_bps=rate or None)
    elif "routing-instance" in then:
        values.update(action="redirect", redirect_target=next(iter(then["routing-instance"])).removeprefix("target:"))
    elif "mark" in then:
        values["action"] = "mark"
    return FlowRoute(destination, source, **values)  # type: ignore[arg-type]


def flow_routes_from_config(tree: ConfigTree) -> list[FlowRoute]:
    """Every flow route of a committed configuration that Junos installs (one it cannot read is skipped)."""
    routes = []
    for entry in tree.root.get("routing-options", {}).get("flow", {}).get("route", {}).values():
        try:
            routes.append(flow_route_from_config(entry))  # type: ignore[arg-type]
        except (ValueError, KeyError):
            continue
    return routes


@dataclass
class FilterCounter:
    """One FlowSpec term's counter and, for a rate-limit route, its policer's count of what it dropped.

    As on Junos, the counter of a rate-limit term counts what the policer let through (in captures the
    policer's count exceeds the counter's), and the counter of a discard term counts every packet it dropped.
    """

    packets: int = 0
    bytes: int = 0
    policed_packets: int = 0
    policed_bytes: int = 0


class RouterState:
    """The shared, lock-protected state of one emulated router."""

    def __init__(self, hostname: str, *, clock: EmulatorClock, model: str = "mx960",
                 version: str = "21.4R3.15", serial: str = "JN1234567890") -> None:
        self.hostname = hostname
        self.model = model
        self.version = version
        self.serial = serial
        self.clock = clock
        self.booted = clock.now() - 86400
        self.mutex = threading.RLock()
        self.changed = threading.Condition(self.mutex)
        initial = ConfigTree()
        initial.set(("system", "host-name", hostname))
        self.history: list[Revision] = [Revision(initial, clock.now(), "root", "cli", "initial", 0)]
        self.candidate = initial.copy()
        self.lock_owner: Session | None = None
        self.pending: PendingConfirm | None = None
        self.faults = Faults()
        self.validators: list[Validator] = []
        self.commit_listeners: list[Callable[[ConfigTree], None]] = []
        self.bgp: dict[tuple[str, str], BgpNeighbor] = {}
        self.interfaces: dict[str, InterfaceCounters] = {
            name: InterfaceCounters(name) for name in ("ge-0/0/0", "ge-0/0/1", "xe-1/0/0")
        }
        # FlowSpec routes received over BGP (the data plane copies them from the BIRD receiver standing in).
        self.learned_flow_routes: tuple[FlowRoute, ...] = ()
        self.flow_counters: dict[tuple[str, str], FilterCounter] = {}
        self._session_ids = itertools.count(4000)
        self._sequence = itertools.count(1)

    @property
    def committed(self) -> ConfigTree:
        return self.history[0].tree

    def new_session_id(self) -> int:
        return next(self._session_ids)

    def record_commit(self, tree: ConfigTree, user: str, log: str) -> Revision:
        """Make `tree` the committed configuration and push the previous one down the rollback list."""
        revision = Revision(tree.copy(), self.clock.now(), user, "netconf", log, next(self._sequence))
        self.history.insert(0, revision)
        del self.history[MAX_ROLLBACKS:]
        self.sync_flow_counters()
        for listener in self.commit_listeners:
            listener(revision.tree)
        self.changed.notify_all()
        return revision

    def installed_flow_routes(self) -> dict[tuple[str, str], FlowRoute]:
        """(filter name, term name) -> route: the committed flow routes and those learned over BGP."""
        routes: dict[tuple[str, str], FlowRoute] = {}
        for route in (*flow_routes_from_config(self.committed), *self.learned_flow_routes):
            routes.setdefault((route.filter_name, route.term_name), route)
        return routes

    def learn_flow_routes(self, routes: Iterable[FlowRoute]) -> None:
        """Replace the routes learned over BGP. Caller holds `mutex`."""
        self.learned_flow_routes = tuple(routes)
        self.sync_flow_counters()

    def sync_flow_counters(self) -> dict[tuple[str, str], FlowRoute]:
        """One counter per installed route: a new route's starts at zero, a removed route's is gone, so a route
        removed and installed again counts from zero, as Junos does when it rebuilds the filter. Caller holds
        `mutex`."""
        installed = self.installed_flow_routes()
        self.flow_counters = {key: self.flow_counters.get(key) or FilterCounter() for key in installed}
        return installed

    def expire_pending(self) -> bool:
        """Roll a commit confirmed back once its deadline passed. Caller holds `mutex`."""
        if self.pending is None or self.clock.now() < self.pending.deadline:
            return False
        restore = self.pending.restore
        self.pending = None
        self.record_commit(restore, "root", "commit confirmed rollback")
        self.candidate = restore.copy()
        return True

    def session_closed(self, session: Session) -> None:
        """A session ended: its exclusive lock goes, and with it the uncommitted changes it made."""
        with self.mutex:
            session.alive = False
            if self.lock_owner is session:
                self.lock_owner = None
                self.candidate = self.committed.copy()
            self.changed.notify_all()
