"""Shared builders for collector tests: a fake clock and a collector driven by it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from collector import FlowCollector, MemoryStore, MonitoredPrefix
from collector.signals import AttackSignal, SignalPhase
from collector.store import AggregateStore
from netsim.flowgen import FlowRecord, Scenario, generate


@dataclass
class FakeClock:
    """Time that moves only when a test says so."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A collector on a fake clock recording every signal it emits."""

    prefixes: list[MonitoredPrefix]
    store: AggregateStore = field(default_factory=MemoryStore)
    clock: FakeClock = field(default_factory=FakeClock)
    signals: list[AttackSignal] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.collector = FlowCollector(
            store=self.store, emit=self.signals.append, prefixes=lambda: self.prefixes, clock=self.clock
        )

    def play(self, scenario: Scenario, fmt: str, rate: int, duration: float, sampling: int = 10) -> None:
        """Feed the scenario tick by tick, moving the clock with it, then let every hold time pass."""
        start = self.clock.now
        for t, packets, _ in generate(scenario, fmt, rate, duration, sampling=sampling, tick=0.05):
            self.clock.now = start + t
            self.collector.ingest_packets(packets, now=self.clock.now)
            self.collector.tick(self.clock.now)
        self.idle(max(p.hold_seconds for p in self.prefixes) + 3)

    def idle(self, seconds: float) -> None:
        """Let time pass without traffic."""
        for _ in range(int(seconds * 4)):
            self.clock.now += 0.25
            self.collector.tick(self.clock.now)

    def phases(self, target: str) -> list[SignalPhase]:
        """Phases of the signals about `target`, in order."""
        return [s.phase for s in self.signals if s.target == target]


def customer_prefix(cidr: str = "203.0.113.0/24", **overrides: object) -> MonitoredPrefix:
    """A prefix whose thresholds sit well above the scenarios' background and well below their attacks.

    Scenarios at 4,000 records/s sampled 1:10 carry 4,000 pps of background spread over 256 hosts, and attacks of
    36,000 pps on one host (or on all hosts, for carpet bombing).
    """
    values: dict[str, object] = {
        "tenant": "acme",
        "host_bps": 100_000_000,
        "host_pps": 10_000,
        "prefix_bps": 1_000_000_000,
        "prefix_pps": 20_000,
        "hold_seconds": 3,
    }
    values.update(overrides)
    return MonitoredPrefix(cidr, **values)  # type: ignore[arg-type]


def mixed_records(count: int, seed: int = 7) -> list[FlowRecord]:
    """IPv4 and IPv6, TCP with flags, UDP, ICMP, GRE and fragments, random sizes."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        v6 = rng.random() < 0.4
        proto = rng.choice([6, 17, 1, 47, 58 if v6 else 1])
        frag = proto == 17 and rng.random() < 0.2
        ports = proto in (6, 17) and not frag
        src = f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}" if v6 else f"198.51.100.{rng.randrange(256)}"
        dst = f"2001:db8:5::{rng.randrange(65536):x}" if v6 else f"203.0.113.{rng.randrange(256)}"
        sport, dport = (rng.randrange(65536), rng.randrange(65536)) if ports else (0, 0)
        flags = rng.randrange(256) if proto == 6 else 0
        records.append(FlowRecord(src, dst, proto, sport, dport, flags, frag, rng.randrange(64, 1500), 1))
    return records


def mutate(packet: bytes, mutations: list[tuple[int, int, int]], word: int = 4) -> bytes:
    """Apply (kind, where, value) mutations: 0 truncates, 1 flips a bit, 2 overwrites a `word`-byte field at a
    multiple of `word`, 3 overwrites one anywhere, and any other kind sets a byte. Fuzz tests aim kinds 2 and 3 at
    the format's length and id fields (XDR words for sFlow, 16-bit fields for NetFlow v9 and IPFIX)."""
    data = bytearray(packet)
    for kind, where, value in mutations:
        if not data:
            break
        position = where % len(data)
        if kind == 0:
            del data[position:]
        elif kind == 1:
            data[position] ^= 1 << (value % 8)
        elif kind in (2, 3):
            position -= position % word if kind == 2 else 0
            field = (value % (1 << (8 * word))).to_bytes(word, "big")
            data[position : position + word] = field[: len(data) - position]
        else:
            data[position] = value & 0xFF
    return bytes(data)
