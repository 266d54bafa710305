"""The contract every Sluice driver keeps: route and rule values, the driver interfaces, one error hierarchy.

Drivers know nothing of the ORM. They take addresses and credentials as arguments, change one network element,
and raise only the errors below, so that callers (Celery tasks, the reconcile loop, the kill switch) can decide
by type, never by matching text, whether a failure may pass (retry) or must stop the change.
"""

from __future__ import annotations

import hashlib
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

BLACKHOLE_COMMUNITY = "65535:666"

# An inclusive range of integer values, e.g. (53, 53) for one port or (1400, 9216) for packet lengths.
ValueRange = tuple[int, int]


class DriverError(Exception):
    """Base of every error a driver raises. `transient` tells callers whether a retry may succeed."""

    transient = False


class ConnectError(DriverError):
    """The element could not be reached or refused the login."""

    transient = True


class PortClosedError(ConnectError):
    """The element's management port refused the connection or did not answer it: the router is down or out of
    reach. Unlike a refused login or a closed session, its coming back shows as a port that accepts again."""


class HostKeyError(ConnectError):
    """The element presented an SSH host key other than the recorded one; nothing was sent to it (no login).

    Not transient: a retry meets the same key. An operator confirms a legitimate change (`confirm_host_key`).
    `presented` is the key offered, as `<type> <base64>`.
    """

    transient = False

    def __init__(self, message: str, *, presented: str) -> None:
        super().__init__(message)
        self.presented = presented


class LockError(DriverError):
    """The configuration is locked by someone else."""

    transient = True


class DriverTimeoutError(DriverError):
    """The element did not answer in time."""

    transient = True


class RenderError(DriverError):
    """Configuration could not be rendered from the desired state; nothing was sent."""


class ConfigLoadError(DriverError):
    """The element refused the candidate configuration."""


class CommitError(DriverError):
    """Commit check or commit failed; the candidate was discarded."""


class VerifyError(DriverError):
    """The change was committed but reading it back did not show the desired state."""


class UnsupportedError(DriverError):
    """The element (or its driver) cannot do what was asked, e.g. read per-rule FlowSpec counters. A retry
    meets the same answer."""


class SpeakerError(DriverError):
    """The BGP speaker refused a command or is not running."""

    transient = True


@dataclass(frozen=True)
class UnicastRoute:
    """A unicast route Sluice announces: a diversion of a more-specific prefix, or an RTBH route.

    `neighbors` empty means every neighbor of the speaker; otherwise the peer addresses to announce to.
    `as_path_prepend` repeats the speaker's own ASN that many times, to steer traffic away from an upstream.
    """

    prefix: str
    next_hop: str
    communities: tuple[str, ...] = ()
    as_path_prepend: int = 0
    neighbors: tuple[str, ...] = ()
    local_preference: int | None = None

    def __post_init__(self) -> None:
        network = ipaddress.ip_network(self.prefix, strict=True)
        hop = ipaddress.ip_address(self.next_hop)
        if network.version != hop.version:
            raise ValueError(f"next hop {self.next_hop} is not of the family of {self.prefix}")
        object.__setattr__(self, "prefix", str(network))
        object.__setattr__(self, "communities", tuple(sorted(set(self.communities))))
        object.__setattr__(self, "neighbors", tuple(sorted(set(self.neighbors))))

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.prefix).version

    @property
    def is_blackhole(self) -> bool:
        return BLACKHOLE_COMMUNITY in self.communities


FLOWSPEC_ACTIONS = ("discard", "rate-limit", "redirect", "mark")
FRAGMENT_FLAGS = ("dont-fragment", "is-fragment", "first-fragment", "last-fragment")
TCP_FLAGS = ("fin", "syn", "rst", "push", "ack", "urgent", "ece", "cwr")


@dataclass(frozen=True)
class FlowSpecRule:
    """A BGP FlowSpec rule (RFC 8955 for IPv4, RFC 8956 for IPv6): match components and one action.

    Match values are tuples of inclusive ranges. The action is one of FLOWSPEC_ACTIONS:
    discard; rate-limit with `rate_bps`; redirect to the VRF whose route target is `redirect_target`
    ("ASN:NN"); mark with `dscp`. Well-formedness beyond types (never TCP/179, sane ranges, destination inside
    the tenant's space) is the job of mitigation.safety, not of this value.
    """

    destination: str
    action: str
    source: str | None = None
    protocols: tuple[ValueRange, ...] = ()
    destination_ports: tuple[ValueRange, ...] = ()
    source_ports: tuple[ValueRange, ...] = ()
    packet_lengths: tuple[ValueRange, ...] = ()
    tcp_flags: tuple[str, ...] = ()
    icmp_types: tuple[ValueRange, ...] = ()
    icmp_codes: tuple[ValueRange, ...] = ()
    fragments: tuple[str, ...] = ()
    rate_bps: int | None = None
    redirect_target: str | None = None
    dscp: int | None = None
    neighbors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        destination = ipaddress.ip_network(self.destination, strict=True)
        object.__setattr__(self, "destination", str(destination))
        if self.source is not None:
            source = ipaddress.ip_network(self.source, strict=True)
            if source.version != destination.version:
                raise ValueError("source and destination are of different address families")
            object.__setattr__(self, "source", str(source))
        if self.action not in FLOWSPEC_ACTIONS:
            raise ValueError(f"unknown FlowSpec action {self.action!r}")
        if self.action == "rate-limit" and self.rate_bps is None:
            raise ValueError("rate-limit needs rate_bps")
        if self.action == "redirect" and not self.redirect_target:
            raise ValueError("redirect needs redirect_target")
        if self.action == "mark" and self.dscp is None:
            raise ValueError("mark needs dscp")
        for name in ("tcp_flags", "fragments"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        unknown = set(self.tcp_flags) - set(TCP_FLAGS) | set(self.fragments) - set(FRAGMENT_FLAGS)
        if unknown:
            raise ValueError(f"unknown flags {sorted(unknown)}")
        object.__setattr__(self, "neighbors", tuple(sorted(set(self.neighbors))))

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.destination).version

    @property
    def name(self) -> str:
        """A stable name for the rule on devices (Junos flow route names), derived from match and action."""
        digest = hashlib.sha1(repr(self.identity()).encode()).hexdigest()[:12]
        return f"sluice-{digest}"

    def identity(self) -> tuple[object, ...]:
        return (
            self.destination, self.source, self.protocols, self.destination_ports, self.source_ports,
            self.packet_lengths, self.tcp_flags, self.icmp_types, self.icmp_codes, self.fragments,
            self.action, self.rate_bps, self.redirect_target, self.dscp,
        )


@dataclass(frozen=True)
class RuleCounters:
    """What a router counted for one FlowSpec rule since it installed it (a reinstalled rule starts at zero).

    `packets`/`bytes` are everything the rule matched; `dropped_*` how much of that the router dropped: all of
    it for discard, what the policer took over the rate for rate-limit, nothing for redirect and mark.
    """

    packets: int
    bytes: int
    dropped_packets: int
    dropped_bytes: int


@dataclass(frozen=True)
class DeviceIntent:
    """Everything Sluice wants configured on one router, as a whole; the driver makes the device match it.

    Only Sluice-owned configuration (names starting with `sluice-`) is ever touched: what is on the device and
    owned by Sluice but absent here is removed, everything else on the device is left alone.
    `diversions` are static routes in `routing_instance` pointing the diverted prefixes at the scrubbing
    center's next hop.
    """

    flow_rules: tuple[FlowSpecRule, ...] = ()
    diversions: tuple[UnicastRoute, ...] = ()
    routing_instance: str = "SLUICE-DIVERT"


@dataclass(frozen=True)
class StageResult:
    """What staging a change on a device did: the diff the device showed, and whether a commit is pending."""

    diff: str
    changed: bool
    commit_pending: bool


class ConfigDriver(ABC):
    """A router whose configuration Sluice changes in two phases, so that many routers change all or none.

    stage(): lock, load, diff, commit check, commit confirmed, read back to verify. confirm(): make it stick.
    abort(): roll a pending confirmed commit back (or discard the candidate), always unlocking.
    dry_run(): diff, then discard. Used as a context manager: leaving it unlocks and closes.
    """

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def stage(self, intent: DeviceIntent, *, confirm_minutes: int = 2) -> StageResult: ...

    @abstractmethod
    def confirm(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    @abstractmethod
    def dry_run(self, intent: DeviceIntent) -> str: ...

    @abstractmethod
    def read_intent(self) -> DeviceIntent:
        """The Sluice-owned configuration now committed on the device, for verification and reconcile."""

    @abstractmethod
    def get_bgp_neighbors(self) -> dict[str, dict[str, object]]:
        """Peer address -> {"is_up": bool, "remote_as": int, "received_prefixes": int, ...}."""

    @abstractmethod
    def get_interfaces_counters(self) -> dict[str, dict[str, int]]:
        """Interface name -> {"rx_octets": int, "tx_octets": int, ...}."""

    def flowspec_counters(self, rules: Sequence[FlowSpecRule]) -> dict[str, RuleCounters]:
        """Rule name (`FlowSpecRule.name`) -> the router's counters for that rule. A rule the router does not
        show (not installed, or removed) is absent, never zero. Device I/O only.

        Raises UnsupportedError unless the driver can read per-rule counters.
        """
        raise UnsupportedError(f"{type(self).__name__} cannot read per-rule FlowSpec counters")


class Speaker(ABC):
    """A BGP speaker that announces Sluice's routes to edge routers and upstreams.

    sync() is the primary call: make the announced set equal the desired set (announce what is missing first,
    then withdraw what is no longer wanted, so a move never leaves a gap).
    """

    @abstractmethod
    def announce(self, route: UnicastRoute | FlowSpecRule) -> None: ...

    @abstractmethod
    def withdraw(self, route: UnicastRoute | FlowSpecRule) -> None: ...

    @abstractmethod
    def announced(self) -> set[UnicastRoute | FlowSpecRule]: ...

    def sync(self, desired: set[UnicastRoute | FlowSpecRule]) -> tuple[int, int]:
        current = self.announced()
        added = desired - current
        removed = current - desired
        for route in added:
            self.announce(route)
        for route in removed:
            self.withdraw(route)
        return len(added), len(removed)
