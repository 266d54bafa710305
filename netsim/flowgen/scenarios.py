"""Traffic scenarios: background traffic to a customer prefix plus the onset and end of one attack vector.

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
}


@dataclass(frozen=True)
class Scenario:
    """One attack on `target` (a host of `prefix`) between `attack_start` and `attack_end` seconds, over background.

    `records(t, count)` counts at the attack's peak: background traffic is `1 - attack_share` of `count` all the
    time, and the attack adds `attack_share` of it while it runs.
    """

    name: str
    prefix: str = DEFAULT_PREFIX_V4
    target: str | None = None
    attack_start: float = 2.0
    attack_end: float = 8.0
    attack_share: float = 0.9
    seed: int = 1

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r}; choose one of {sorted(SCENARIOS)}")

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
        """The attacked host (the prefix itself for carpet bombing)."""
        if self.name == "carpet_bombing":
            return str(self.network)
        return self.target or str(self.network.network_address + 10)

    def attacking(self, t: float) -> bool:
        """Whether the attack runs at `t` seconds into the scenario."""
        return self.name != "background" and self.attack_start <= t < self.attack_end

    def records(self, t: float, count: int, rng: np.random.Generator | None = None) -> npt.NDArray[np.void]:
        """`count` records as an exporter would see them at `t` seconds into the scenario."""
        rng = rng or np.random.default_rng(self.seed)
        attack = round(count * self.attack_share)
        background = count - attack
        out = np.concatenate([self._background(background, rng), self._attack(attack if self.attacking(t) else 0, rng)])
        return out[rng.permutation(out.size)]

    def _hosts(self, count: int, rng: np.random.Generator, spread: int) -> tuple[np.ndarray, np.ndarray]:
        """(hi, lo) of random hosts among the first `spread` addresses of the prefix."""
        base = int(self.network.network_address)
        offsets = rng.integers(0, min(spread, self.network.num_addresses), count, dtype=np.uint64)
        if self.network.version == 4:
            return np.zeros(count, dtype=np.uint64), (np.uint64(base | V4_MAPPED) + offsets)
        return np.full(count, base >> 64, dtype=np.uint64), np.uint64(base & (2**64 - 1)) + offsets

    def _sources(self, count: int, rng: np.random.Generator, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """(hi, lo) of sources drawn from a pool of `pool` internet addresses."""
        picks = rng.integers(0, pool, count, dtype=np.uint64)
        if self.network.version == 4:
            return np.zeros(count, dtype=np.uint64), np.uint64(0x6440_0000 | V4_MAPPED) + picks
        return np.full(count, 0x2001_0DB8_00AA_0000, dtype=np.uint64), picks + np.uint64(1)

    def _background(self, count: int, rng: np.random.Generator) -> npt.NDArray[np.void]:
        out = np.zeros(count, dtype=RECORD_ARRAY_DTYPE)
        out["dst_hi"], out["dst_lo"] = self._hosts(count, rng, 256)
        out["src_hi"], out["src_lo"] = self._sources(count, rng, 50_000)
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
        out["src_hi"], out["src_lo"] = self._sources(count, rng, 5_000)
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
