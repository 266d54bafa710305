"""Traffic scenarios: background traffic to a customer prefix plus the onset and end of one attack vector.

Beyond steady attacks: pulse waves (on for `pulse_on` seconds, off for `pulse_off`), slow ramps (from nothing at
`attack_start` to the full rate at `attack_end`), reflection from a handful of amplifiers (`sources`), carpet
bombing over the whole prefix, and the flash crowd: many new legitimate clients whose traffic looks like the
background's (same protocols, ports, sizes and per-client rate), which is not an attack.

Records are generated as numpy arrays (not objects) so the generator keeps up with hundreds of thousands of
records per second; `to_records` turns them into `FlowRecord`s for tests that want to read them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.signals import AMPLIFICATION_SOURCE_PORTS, AttackVector
from netsim.flowgen.records import RECORD_ARRAY_DTYPE, FlowRecord

V4_MAPPED = 0xFFFF_0000_0000
DEFAULT_PREFIX_V4 = "203.0.113.0/24"
DEFAULT_PREFIX_V6 = "2001:db8:5::/48"
AMPLIFICATION_SIZES = {53: 1400, 123: 468, 11211: 1400, 1900: 320, 389: 1400, 19: 1024}

SCENARIOS: dict[str, AttackVector | None] = {
    "background": None,
    **{vector.value: vector for vector in AMPLIFICATION_SOURCE_PORTS},
    "syn_flood": AttackVector.SYN_FLOOD,
    "ack_flood": AttackVector.ACK_FLOOD,
    "icmp_flood": AttackVector.ICMP_FLOOD,
    "gre_flood": AttackVector.GRE_FLOOD,
    "fragments": AttackVector.FRAGMENTS,
    "udp_flood": AttackVector.UDP_FLOOD,
    "carpet_bombing": AttackVector.CARPET_BOMBING,
    "flash_crowd": None,
}
SHAPES = ("steady", "pulse", "ramp")
BACKGROUND_SOURCES = 50_000
FLASH_CROWD_SOURCES = 1_000_000
ATTACK_SOURCES_FIRST = BACKGROUND_SOURCES + FLASH_CROWD_SOURCES
ATTACK_SOURCE_SPREAD = 1 << 20


@dataclass(frozen=True)
class Scenario:
    """One attack on `target` (a host of `prefix`) between `attack_start` and `attack_end` seconds, over background.

    `records(t, count)` counts at the attack's peak: background traffic is `1 - attack_share` of `count` all the
    time, and the attack adds `attack_share` of it while it runs (times its `shape`'s level at `t`). The attack
    comes from `sources` addresses (thousands when spoofed, a handful when reflected). A flash crowd adds the same
    share of background-like traffic from new clients instead.
    """

    name: str
    prefix: str = DEFAULT_PREFIX_V4
    target: str | None = None
    attack_start: float = 2.0
    attack_end: float = 8.0
    attack_share: float = 0.9
    seed: int = 1
    sources: int = 5_000
    shape: str = "steady"
    pulse_on: float = 3.0
    pulse_off: float = 3.0

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r}; choose one of {sorted(SCENARIOS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose one of {SHAPES}")
        if self.sources < 1:
            raise ValueError("an attack needs at least one source")

    @property
    def is_attack(self) -> bool:
        """Whether the scenario holds an attack (background and flash crowds do not)."""
        return self.vector is not None

    @property
    def vector(self) -> AttackVector | None:
        """The vector the attack should be classified as."""
        return SCENARIOS[self.name]

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The victim prefix."""
        return ipaddress.ip_network(self.prefix, strict=False)

    @property
    def target_address(self) -> str:
        """The attacked host (the prefix itself for carpet bombing and flash crowds)."""
        if self.name in ("carpet_bombing", "flash_crowd"):
            return str(self.network)
        return self.target or str(self.network.network_address + 10)

    def level(self, t: float) -> float:
        """The attack's (or flash crowd's) rate at `t` seconds, as a fraction of its peak."""
        if self.name == "background" or not self.attack_start <= t < self.attack_end:
            return 0.0
        if self.shape == "pulse":
            return 1.0 if (t - self.attack_start) % (self.pulse_on + self.pulse_off) < self.pulse_on else 0.0
        if self.shape == "ramp":
            return (t - self.attack_start) / (self.attack_end - self.attack_start)
        return 1.0

    def attacking(self, t: float) -> bool:
        """Whether the attack (or flash crowd) sends at `t` seconds into the scenario."""
        return self.level(t) > 0

    def records(self, t: float, count: int, rng: np.random.Generator | None = None) -> npt.NDArray[np.void]:
        """`count` records as an exporter would see them at `t` seconds into the scenario."""
        rng = rng or np.random.default_rng(self.seed)
        peak = round(count * self.attack_share)
        background = count - peak
        extra = round(peak * self.level(t))
        if self.name == "flash_crowd":
            crowd = self._background(extra, rng, sources=FLASH_CROWD_SOURCES, first_source=BACKGROUND_SOURCES)
            out = np.concatenate([self._background(background, rng), crowd])
        else:
            out = np.concatenate([self._background(background, rng), self._attack(extra, rng)])
        return out[rng.permutation(out.size)]

    def _hosts(self, count: int, rng: np.random.Generator, spread: int) -> tuple[np.ndarray, np.ndarray]:
        """(hi, lo) of random hosts among the first `spread` addresses of the prefix."""
        base = int(self.network.network_address)
        offsets = rng.integers(0, min(spread, self.network.num_addresses), count, dtype=np.uint64)
        if self.network.version == 4:
            return np.zeros(count, dtype=np.uint64), (np.uint64(base | V4_MAPPED) + offsets)
        return np.full(count, base >> 64, dtype=np.uint64), np.uint64(base & (2**64 - 1)) + offsets

    def _sources(self, count: int, rng: np.random.Generator, pool: int, first: int = 0,
                 stride: int = 1) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(hi, lo) of sources drawn from a pool of `pool` internet addresses, `stride` apart from the `first`."""
        picks = np.uint64(first) + rng.integers(0, pool, count, dtype=np.uint64) * np.uint64(stride)
        if self.network.version == 4:
            return np.zeros(count, dtype=np.uint64), np.uint64(0x6440_0000 | V4_MAPPED) + picks
        return np.full(count, 0x2001_0DB8_00AA_0000, dtype=np.uint64), picks + np.uint64(1)

    def _background(self, count: int, rng: np.random.Generator, sources: int = BACKGROUND_SOURCES,
                    first_source: int = 0) -> npt.NDArray[np.void]:  # fmt: skip
        out = np.zeros(count, dtype=RECORD_ARRAY_DTYPE)
        out["dst_hi"], out["dst_lo"] = self._hosts(count, rng, 256)
        out["src_hi"], out["src_lo"] = self._sources(count, rng, sources, first_source)
        tcp = rng.random(count) < 0.8
        out["proto"] = np.where(tcp, 6, 17)
        out["tcp_flags"] = np.where(tcp, 0x18, 0)
        out["sport"] = 443
        out["dport"] = rng.integers(32768, 61000, count)
        out["bytes"] = rng.integers(200, 1500, count)
        out["packets"] = 1
        out["ipv6"] = self.network.version == 6
        return out

    def _attack(self, count: int, rng: np.random.Generator) -> npt.NDArray[np.void]:
        out = np.zeros(count, dtype=RECORD_ARRAY_DTYPE)
        target = ipaddress.ip_address(self.target_address.split("/")[0])
        value = int(target) | V4_MAPPED if target.version == 4 else int(target)
        out["dst_hi"], out["dst_lo"] = value >> 64, value & (2**64 - 1)
        if self.name == "carpet_bombing":
            out["dst_hi"], out["dst_lo"] = self._hosts(count, rng, 256)
        # Attackers are scattered over a million addresses: a handful of amplifiers sit in different networks.
        stride = max(1, ATTACK_SOURCE_SPREAD // self.sources)
        out["src_hi"], out["src_lo"] = self._sources(count, rng, self.sources, ATTACK_SOURCES_FIRST, stride)
        out["packets"] = 1
        out["ipv6"] = self.network.version == 6
        vector = self.vector
        ephemeral = rng.integers(1024, 65535, count)
        if vector in AMPLIFICATION_SOURCE_PORTS:
            port = AMPLIFICATION_SOURCE_PORTS[vector]
            out["proto"], out["sport"], out["dport"] = 17, port, ephemeral
            out["bytes"] = AMPLIFICATION_SIZES[port]
        elif vector in (AttackVector.SYN_FLOOD, AttackVector.ACK_FLOOD):
            out["proto"], out["sport"], out["dport"] = 6, ephemeral, 443
            out["tcp_flags"] = 0x02 if vector is AttackVector.SYN_FLOOD else 0x10
            out["bytes"] = 60
        elif vector is AttackVector.ICMP_FLOOD:
            out["proto"] = 58 if self.network.version == 6 else 1
            out["bytes"] = 1000
        elif vector is AttackVector.GRE_FLOOD:
            out["proto"], out["bytes"] = 47, 1400
        elif vector is AttackVector.FRAGMENTS:
            out["proto"], out["frag"], out["bytes"] = 17, 1, 1400
        else:
            ports = set(AMPLIFICATION_SOURCE_PORTS.values())
            sport = np.where(np.isin(ephemeral, list(ports)), ephemeral + 1, ephemeral)
            out["proto"], out["sport"], out["dport"], out["bytes"] = 17, sport, rng.integers(1, 65535, count), 1200
        return out


def to_records(array: npt.NDArray[np.void]) -> list[FlowRecord]:
    """Records of a generated array as `FlowRecord`s."""

    def address(hi: int, lo: int) -> str:
        hi, lo = int(hi), int(lo)
        if hi == 0 and lo >> 32 == 0xFFFF:
            return str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
        return str(ipaddress.IPv6Address(hi << 64 | lo))

    return [
        FlowRecord(address(r["src_hi"], r["src_lo"]), address(r["dst_hi"], r["dst_lo"]), int(r["proto"]),
                   int(r["sport"]), int(r["dport"]), int(r["tcp_flags"]), bool(r["frag"]), int(r["bytes"]),
                   int(r["packets"]))
        for r in array
    ]
