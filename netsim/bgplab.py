"""BGP lab: BIRD 2 routers on loopback addresses that receive Sluice's announcements, and their RIBs as values.

Tests and benchmarks start a few receiving routers, point a speaker at them, and read back what the routers
learned, so that what is asserted is what a real router accepted, not what the driver believes it sent.
Each router has its own configuration, control socket, pid file and log under a given directory, binds only its
own address (`strict bind on`), exports nothing back (`export none`) and has no kernel protocol, so several
labs run side by side and nothing touches the host's routing.

Next hops of announced routes are usually not reachable from the lab; BIRD then marks a route unreachable but
keeps it and its attributes. Sessions are `multihop` so that BIRD resolves next hops recursively instead of
refusing them as not directly connected.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from netsim.polling import wait_for

T = TypeVar("T")

BIRD = shutil.which("bird") or "/usr/sbin/bird"
CHANNELS = ("ipv4", "ipv6", "flow4", "flow6")
FLOW_TABLES = {"flow4": "flowtab4", "flow6": "flowtab6"}


class LabError(Exception):
    """A lab router could not be started, reached, or did not reach the expected state in time."""


@dataclass(frozen=True)
class BirdPeer:
    """A BGP session of a lab router. `passive` (default): BIRD waits for the speaker to connect."""

    address: str
    asn: int
    passive: bool = True
    port: int | None = None
    channels: tuple[str, ...] = CHANNELS


@dataclass(frozen=True)
class BirdRoute:
    """A unicast route as BIRD holds it: what a router's RIB shows after import."""

    prefix: str
    protocol: str
    state: str
    next_hop: str | None = None
    as_path: tuple[int, ...] = ()
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    ext_communities: tuple[str, ...] = ()
    local_pref: int | None = None
    origin: str | None = None
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class BirdFlow:
    """A FlowSpec rule as BIRD holds it: match components as BIRD prints them, and the decoded actions."""

    match: str
    components: dict[str, str] = field(compare=False, hash=False)
    protocol: str = ""
    actions: tuple[tuple[str, object], ...] = ()
    ext_communities: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    as_path: tuple[int, ...] = ()

    @property
    def destination(self) -> str | None:
        return self.components.get("dst")

    @property
    def source(self) -> str | None:
        return self.components.get("src")

    def ranges(self, component: str) -> tuple[tuple[int, int], ...] | None:
        """A numeric component (`proto`, `dport`, `length`, ...) as inclusive ranges, or None if absent."""
        text = self.components.get(component)
        return None if text is None else numeric_ranges(text)


def numeric_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """BIRD's `80,1000..2000` as ((80, 80), (1000, 2000))."""
    ranges = []
    for part in text.split(","):
        low, _, high = part.strip().partition("..")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


FLOW_KEYS = (
    "dst", "src", "proto", "next header", "port", "dport", "sport", "icmp type", "icmp code", "tcp flags",
    "length", "dscp", "fragment", "label",
)


def parse_flow_match(match: str) -> dict[str, str]:
    """`flow4 { dst 10.0.0.1/32; proto 6; dport 80; }` as {"dst": "10.0.0.1/32", "proto": "6", "dport": "80"}."""
    inner = match[match.index("{") + 1 : match.rindex("}")]
    components = {}
    for part in inner.split(";"):
        part = part.strip()
        if not part:
            continue
        key = max((k for k in FLOW_KEYS if part == k or part.startswith(k + " ")), key=len, default=None)
        if key is None:
            key, _, value = part.partition(" ")
        else:
            value = part[len(key) :]
        components[key] = value.strip()
    return components


_GENERIC = re.compile(r"\(generic, 0x([0-9a-f]+), 0x([0-9a-f]+)\)")


def decode_flow_actions(ext_communities: Iterable[str]) -> tuple[tuple[str, object], ...]:
    """FlowSpec actions (RFC 8955 section 7) from BIRD's generic extended communities.

    traffic-rate 0 is shown as ("discard", None); other rates as ("rate-limit", bits per second);
    ("redirect", "ASN:NN"); ("mark", dscp).
    """
    actions: list[tuple[str, object]] = []
    for community in ext_communities:
        match = _GENERIC.fullmatch(community)
        if not match:
            continue
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        kind = high >> 16
        if kind == 0x8006:
            rate = struct.unpack("!f", struct.pack("!I", low))[0]
            actions.append(("discard", None) if rate == 0 else ("rate-limit", round(rate * 8)))
        elif kind == 0x8008:
            actions.append(("redirect", f"{high & 0xFFFF}:{low}"))
        elif kind == 0x8208:
            actions.append(("redirect", f"{((high & 0xFFFF) << 16) | (low >> 16)}:{low & 0xFFFF}"))
        elif kind == 0x8009:
            actions.append(("mark", low & 0x3F))
        elif kind == 0x8007:
            actions.append(("traffic-action", low & 0x3))
    return tuple(actions)


_ARRIVAL = re.compile(r"^(?P<net>[0-9a-fA-F.:]+/\d+)\s+\S+\s+\[\S+ (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(?P<ms>\d{3})",
                      re.MULTILINE)
_ROUTE_HEAD = re.compile(r"^(?P<net>flow[46] \{.*\}|\S+)?\s+(?P<state>\S+)?\s*\[(?P<proto>\S+)")


def _pairs(text: str) -> tuple[str, ...]:
    """`(65001,100) (65535,666)` as ("65001:100", "65535:666"); large communities keep their three parts."""
    return tuple(":".join(p.strip() for p in item.split(",")) for item in re.findall(r"\(([^()]*)\)", text))


def parse_routes(text: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """`show route all` output as (network, state, protocol, attributes) per route."""
    routes: list[tuple[str, str, str, dict[str, str]]] = []
    network = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("Table "):
            continue
        if line.startswith("\t") or (line.startswith("        ") and ":" in line and "[" not in line):
            if routes:
                key, _, value = line.strip().partition(":")
                routes[-1][3][key.strip()] = value.strip()
            continue
        head = line
        if head.startswith("flow"):
            end = head.index("}") + 1
            network, rest = head[:end], head[end:]
        elif head[0].isspace():
            rest = head
        else:
            network, _, rest = head.partition(" ")
        bracket = rest.index("[")
        state = rest[:bracket].strip() or "flow"
        protocol = rest[bracket + 1 :].split()[0]
        routes.append((network, state, protocol, {}))
    return routes


def _as_path(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or ""))


def to_unicast(network: str, state: str, protocol: str, attrs: dict[str, str]) -> BirdRoute:
    local_pref = attrs.get("BGP.local_pref")
    return BirdRoute(
        prefix=network,
        protocol=protocol,
        state=state,
        next_hop=attrs.get("BGP.next_hop", "").split()[0] if attrs.get("BGP.next_hop") else None,
        as_path=_as_path(attrs.get("BGP.as_path")),
        communities=_pairs(attrs.get("BGP.community", "")),
        large_communities=_pairs(attrs.get("BGP.large_community", "")),
        ext_communities=tuple(re.findall(r"\([^()]*\)", attrs.get("BGP.ext_community", ""))),
        local_pref=int(local_pref) if local_pref else None,
        origin=attrs.get("BGP.origin"),
        attributes=attrs,
    )


def to_flow(network: str, protocol: str, attrs: dict[str, str]) -> BirdFlow:
    ext = tuple(re.findall(r"\([^()]*\)", attrs.get("BGP.ext_community", "")))
    return BirdFlow(
        match=network,
        components=parse_flow_match(network),
        protocol=protocol,
        actions=decode_flow_actions(ext),
        ext_communities=ext,
        communities=_pairs(attrs.get("BGP.community", "")),
        as_path=_as_path(attrs.get("BGP.as_path")),
    )


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie (exited, not yet reaped by its parent) no longer holds its sockets."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class BirdControl:
    """BIRD's control socket protocol (what birdc speaks): numbered reply lines, ended by a 0xxx/8xxx/9xxx line.

    Spoken directly rather than by running birdc per read, so that polling a RIB every few milliseconds
    measures BIRD and not process start-up.
    """

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.path))
        self._sock, self._buffer = sock, b""
        self._read_reply()
        return sock

    def _readline(self) -> str:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("BIRD closed its control socket")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _read_reply(self) -> tuple[int, str]:
        lines: list[str] = []
        code = 0
        while True:
            line = self._readline()
            if line[:4].isdigit() and len(line) >= 5 and line[4] in "- ":
                code = int(line[:4])
                text, final = line[5:], line[4] == " "
            else:
                text, final = line[1:], False
            if code != 0 or not final:
                lines.append(text)
            if final and (code < 1000 or code >= 8000):
                return code, "\n".join(lines)

    def command(self, command: str) -> str:
        """Run a CLI command; LabError with BIRD's message for errors (8xxx/9xxx codes)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    sock = self._sock or self._connect()
                    sock.sendall(command.encode() + b"\n")
                    code, text = self._read_reply()
                    break
                except OSError as exc:
                    self.close_locked()
                    if attempt == 2:
                        raise LabError(f"BIRD control socket {self.path}: {exc}") from exc
            if code >= 8000:
                raise LabError(f"BIRD refused {command!r}: {text.strip()}")
            return text

    def close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


class BirdRouter:
    """A BIRD 2 daemon receiving BGP on one loopback address, with its files under `directory/name`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str,
        address: str,
        local_as: int,
        peers: Iterable[BirdPeer],
        *,
        port: int = 179,
        router_id: str | None = None,
    ) -> None:
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback:
            raise ValueError(f"lab routers live on loopback addresses, not {address}")
        self.name = name
        self.address = str(ip)
        self.local_as = local_as
        self.peers = tuple(peers)
        self.port = port
        self.router_id = router_id or (self.address if ip.version == 4 else "127.0.0.1")
        self.directory = Path(directory).resolve() / name
        self.control = BirdControl(self.socket_path)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "bird.conf"

    @property
    def socket_path(self) -> Path:
        return self.directory / "bird.ctl"

    @property
    def pid_path(self) -> Path:
        return self.directory / "bird.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "bird.log"

    def protocol_name(self, peer: BirdPeer) -> str:
        return "peer_" + re.sub(r"[^0-9a-zA-Z]", "_", peer.address)

    def render_config(self) -> str:
        """Receive-only configuration: every channel imports all and exports none; no device/kernel protocol."""
        channels = {c for peer in self.peers for c in peer.channels}
        lines = [
            f"router id {self.router_id};",
            f'log "{self.log_path}" all;',
            # Each route shows when it arrived, to the millisecond (`arrivals`): a benchmark can then poll rarely.
            "timeformat route iso long ms;",
            *(f"{c} table {FLOW_TABLES[c]};" for c in ("flow4", "flow6") if c in channels),
            "",
        ]
        for peer in self.peers:
            ibgp = peer.asn == self.local_as
            remote_port = f" port {peer.port}" if peer.port else ""
            lines += [
                f"protocol bgp {self.protocol_name(peer)} {{",
                f"  local {self.address} port {self.port} as {self.local_as};",
                f"  neighbor {peer.address}{remote_port} as {peer.asn};",
                "  strict bind on;",
                f"  passive {'on' if peer.passive else 'off'};",
                "  multihop;",
                "  error wait time 1, 2;",
                "  error forget time 10;",
                "  connect delay time 1;",
                "  connect retry time 2;",
                "  hold time 90;",
            ]
            for channel in peer.channels:
                table = f" table {FLOW_TABLES[channel]};" if channel in FLOW_TABLES else ""
                extra = " gateway recursive;" if channel in ("ipv4", "ipv6") and ibgp else ""
                lines.append(f"  {channel} {{{table} import all; export none;{extra} }};")
            lines += ["}", ""]
        return "\n".join(lines)

    def start(self, timeout: float = 10.0) -> None:
        """Write the configuration and start BIRD in the foreground under our control; wait for its socket."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        self.stop_stale()
        self.socket_path.unlink(missing_ok=True)
        with (self.directory / "bird.out").open("ab") as out:
            self._process = subprocess.Popen(
                [BIRD, "-f", "-c", str(self.config_path), "-s", str(self.socket_path), "-P", str(self.pid_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout, what=f"BIRD {self.name} control socket", error=LabError)

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise LabError(f"BIRD {self.name} exited: {(self.directory / 'bird.out').read_text()[-2000:]}")
        self.control.command("show status")
        return True

    def stop_stale(self) -> None:
        """A BIRD left by an earlier run of the same lab would hold the address: stop it by its pid file."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not _alive(pid), 10, what="stale BIRD to exit", error=LabError)

    def stop(self) -> None:
        self.control.close()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def cli(self, command: str) -> str:
        """Any birdc command, answered through this router's own control socket."""
        return self.control.command(command)

    def session_state(self, peer: BirdPeer | str) -> str:
        """The BGP state of the session to a peer ("Established", "Active", "Passive", ...)."""
        address = peer if isinstance(peer, str) else peer.address
        name = self.protocol_name(BirdPeer(address, 0))
        match = re.search(r"BGP state:\s+(\S+)", self.cli(f"show protocols all {name}"))
        return match.group(1) if match else "unknown"

    def established(self, peer: BirdPeer | str | None = None) -> bool:
        peers = [peer] if peer is not None else list(self.peers)
        return all(self.session_state(p) == "Established" for p in peers)

    def wait_established(self, peer: BirdPeer | str | None = None, timeout: float = 20.0) -> None:
        wait_for(lambda: self.established(peer), timeout, what=f"BGP sessions of {self.name}", error=LabError)

    def unicast_routes(self, family: int = 4) -> list[BirdRoute]:
        text = self.cli(f"show route all table master{family}")
        return [to_unicast(net, state, proto, attrs) for net, state, proto, attrs in parse_routes(text)]

    def arrivals(self, family: int = 4) -> dict[str, float]:
        """Prefix -> when BIRD took the route in (epoch seconds, millisecond precision), from `show route`'s time
        column: the moment it was received, however late it is read."""
        arrived: dict[str, float] = {}
        for match in _ARRIVAL.finditer(self.cli(f"show route table master{family}")):
            stamp = time.mktime(time.strptime(match["time"], "%Y-%m-%d %H:%M:%S"))
            arrived.setdefault(match["net"], stamp + int(match["ms"]) / 1000)
        return arrived

    def unicast(self, family: int = 4) -> dict[str, BirdRoute]:
        """Prefix -> route (the first, i.e. best, when several sessions sent the same prefix)."""
        routes: dict[str, BirdRoute] = {}
        for route in self.unicast_routes(family):
            routes.setdefault(route.prefix, route)
        return routes

    def flows(self, family: int = 4) -> dict[str, BirdFlow]:
        """FlowSpec table flow4/flow6: BIRD's match text -> rule."""
        text = self.cli(f"show route all table {FLOW_TABLES[f'flow{family}']}")
        flows: dict[str, BirdFlow] = {}
        for net, _state, proto, attrs in parse_routes(text):
            flows.setdefault(net, to_flow(net, proto, attrs))
        return flows

    def flows_to(self, destination: str, family: int | None = None) -> list[BirdFlow]:
        """The flow rules whose destination component is `destination`."""
        network = str(ipaddress.ip_network(destination))
        version = family or ipaddress.ip_network(destination).version
        return [f for f in self.flows(version).values() if f.destination == network]

    def route_count(self, table: str) -> int:
        """Number of routes in a table, cheaper than reading them all (for bulk waits)."""
        text = self.cli(f"show route table {table} count")
        match = re.search(r"(\d+) of \d+ routes", text) or re.search(r"(\d+) routes", text)
        return int(match.group(1)) if match else 0
