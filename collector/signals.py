"""The shape of an attack signal, shared by every source (REST API, FastNetMon hook, the flow collector).

Plain values with no ORM, so that the collector can build them in its hot loop and hand them to
`mitigation.services.record_signal()`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum


class AttackVector(StrEnum):
    """Attack vectors Sluice recognises. Amplification vectors are named after the reflected service."""

    UDP_FLOOD = "udp_flood"
    SYN_FLOOD = "syn_flood"
    TCP_FLOOD = "tcp_flood"
    ACK_FLOOD = "ack_flood"
    DNS_AMPLIFICATION = "dns_amplification"
    NTP_AMPLIFICATION = "ntp_amplification"
    MEMCACHED_AMPLIFICATION = "memcached_amplification"
    SSDP_AMPLIFICATION = "ssdp_amplification"
    CLDAP_AMPLIFICATION = "cldap_amplification"
    CHARGEN_AMPLIFICATION = "chargen_amplification"
    ICMP_FLOOD = "icmp_flood"
    GRE_FLOOD = "gre_flood"
    FRAGMENTS = "fragments"
    CARPET_BOMBING = "carpet_bombing"
    OTHER = "other"


# Amplification vectors and the UDP source port their reflected traffic comes from.
AMPLIFICATION_SOURCE_PORTS: dict[AttackVector, int] = {
    AttackVector.DNS_AMPLIFICATION: 53,
    AttackVector.NTP_AMPLIFICATION: 123,
    AttackVector.MEMCACHED_AMPLIFICATION: 11211,
    AttackVector.SSDP_AMPLIFICATION: 1900,
    AttackVector.CLDAP_AMPLIFICATION: 389,
    AttackVector.CHARGEN_AMPLIFICATION: 19,
}


class SignalPhase(StrEnum):
    """Whether a signal starts, updates or ends an attack."""

    START = "start"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True)
class AttackSignal:
    """One observation of an attack on `target` (an address or a prefix) by a named detector."""

    target: str
    vectors: tuple[AttackVector, ...]
    bps: int
    pps: int
    phase: SignalPhase = SignalPhase.START
    detector: str = "api"
    top_sources: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        network = ipaddress.ip_network(self.target, strict=False)
        object.__setattr__(self, "target", str(network))
        object.__setattr__(self, "vectors", tuple(AttackVector(v) for v in self.vectors))
        object.__setattr__(self, "phase", SignalPhase(self.phase))
        if self.bps < 0 or self.pps < 0:
            raise ValueError("bps and pps cannot be negative")
