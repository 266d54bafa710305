"""The state of one emulated Junos router: configuration databases, lock, commit history, clock and faults.

Everything that NETCONF sessions share lives here behind one lock, so that the RPC handlers (rpc.py) stay pure
functions of (state, session, request). Tests reach the same object through JunosEmulator to set operational
data (BGP neighbors, interface counters), add validators and inject faults.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netsim.junos.config import ConfigTree

MAX_ROLLBACKS = 50
Validator = Callable[[list[str]], str | None]


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
        for listener in self.commit_listeners:
            listener(revision.tree)
        self.changed.notify_all()
        return revision

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
