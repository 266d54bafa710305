"""Which FlowSpec rules stop which attack vector for which application profile, and how cleanly.

A filter is `exact` when it drops the attack with no collateral for that profile (e.g. memcached replies to a web
server), `partial` when it also limits some wanted traffic (rate-limiting UDP to a game server), and `none` when
only a scrubbing center can tell attack from service (a SYN flood on a web shop). The planner uses the quality
to price FlowSpec-only mitigation; the rules never match TCP port 179 (ports are split around it).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from collector.signals import AMPLIFICATION_SOURCE_PORTS, AttackVector
from devices.drivers.base import FlowSpecRule, ValueRange
from mitigation.engine.types import REALTIME_PROFILES, AppProfile, EngineSettings

TCP, UDP, ICMP, GRE, ICMPV6 = 6, 17, 1, 47, 58

# Every port but BGP's: TCP rules use it so that no rule can ever match a BGP session.
PORTS_BUT_BGP: tuple[ValueRange, ...] = ((0, 178), (180, 65535))


class FilterQuality(IntEnum):
    """How well FlowSpec alone handles a vector for a profile; higher is better, `min` combines vectors."""

    NONE = 0
    PARTIAL = 1
    EXACT = 2


def _udp_except(port: int) -> tuple[ValueRange, ...]:
    return tuple(r for r in ((0, port - 1), (port + 1, 65535)) if r[0] <= r[1])


# A rule without its destination: the FlowSpecRule keyword arguments, so that quality needs no rule built.
RuleSpec = dict[str, object]


def vector_spec(
    vector: AttackVector, profile: AppProfile, family: int, settings: EngineSettings
) -> tuple[FilterQuality, RuleSpec | None]:
    """How cleanly FlowSpec filters one vector for this profile, and the rule that does it (minus destination)."""
    if vector in AMPLIFICATION_SOURCE_PORTS:
        port = AMPLIFICATION_SOURCE_PORTS[vector]
        if vector == AttackVector.DNS_AMPLIFICATION and profile == AppProfile.DNS:
            # A resolver needs DNS answers: cap large replies instead of dropping them all.
            return FilterQuality.PARTIAL, {
                "action": "rate-limit", "protocols": ((UDP, UDP),), "source_ports": ((port, port),),
                "packet_lengths": ((512, 9216),), "rate_bps": settings.dns_response_rate_bps,
            }
        return FilterQuality.EXACT, {"action": "discard", "protocols": ((UDP, UDP),), "source_ports": ((port, port),)}
    if vector == AttackVector.FRAGMENTS:
        return FilterQuality.EXACT, {"action": "discard", "protocols": ((UDP, UDP),), "fragments": ("is-fragment",)}
    if vector == AttackVector.ICMP_FLOOD:
        proto = ICMP if family == 4 else ICMPV6
        return FilterQuality.EXACT, {"action": "rate-limit", "protocols": ((proto, proto),),
                                     "rate_bps": settings.icmp_rate_bps}
    if vector == AttackVector.GRE_FLOOD:
        return FilterQuality.EXACT, {"action": "discard", "protocols": ((GRE, GRE),)}
    if vector == AttackVector.UDP_FLOOD:
        return _udp_flood_spec(profile, settings)
    if vector == AttackVector.SYN_FLOOD and profile in REALTIME_PROFILES:
        return FilterQuality.PARTIAL, {
            "action": "rate-limit", "protocols": ((TCP, TCP),), "tcp_flags": ("syn",),
            "destination_ports": PORTS_BUT_BGP, "source_ports": PORTS_BUT_BGP, "rate_bps": settings.syn_rate_bps,
        }
    return FilterQuality.NONE, None


def _udp_flood_spec(profile: AppProfile, settings: EngineSettings) -> tuple[FilterQuality, RuleSpec | None]:
    """Web and API services need only QUIC over UDP, DNS only port 53; realtime services live on UDP."""
    if profile in (AppProfile.WEB, AppProfile.API):
        return FilterQuality.EXACT, {"action": "discard", "protocols": ((UDP, UDP),),
                                     "destination_ports": _udp_except(443)}
    if profile == AppProfile.DNS:
        return FilterQuality.EXACT, {"action": "discard", "protocols": ((UDP, UDP),),
                                     "destination_ports": _udp_except(53)}
    if profile in REALTIME_PROFILES:
        return FilterQuality.PARTIAL, {"action": "rate-limit", "protocols": ((UDP, UDP),),
                                       "rate_bps": settings.realtime_udp_rate_bps}
    return FilterQuality.NONE, None


def attack_quality(vectors: Iterable[AttackVector], profile: AppProfile, settings: EngineSettings) -> FilterQuality:
    """The quality of the weakest vector's filter; an attack with no known vector cannot be filtered."""
    qualities = [vector_spec(v, profile, 4, settings)[0] for v in vectors]
    return min(qualities) if qualities else FilterQuality.NONE


def _rules(specs: Iterable[RuleSpec | None], destination: str) -> tuple[FlowSpecRule, ...]:
    rules: dict[tuple[object, ...], FlowSpecRule] = {}
    for spec in specs:
        if spec is not None:
            rule = FlowSpecRule(destination, **spec)  # type: ignore[arg-type]
            rules.setdefault(rule.identity(), rule)
    return tuple(rules.values())


def attack_filters(
    vectors: Iterable[AttackVector], profile: AppProfile, destination: str, family: int, settings: EngineSettings
) -> tuple[FlowSpecRule, ...]:
    """The rules for all vectors of an attack that FlowSpec can filter, one per distinct rule."""
    return _rules((vector_spec(v, profile, family, settings)[1] for v in vectors), destination)


def amplification_filters(
    vectors: Iterable[AttackVector], profile: AppProfile, destination: str, family: int, settings: EngineSettings
) -> tuple[FlowSpecRule, ...]:
    """Rules against the amplification vectors present, to drop reflected traffic at the edge before diversion."""
    specs = (vector_spec(v, profile, family, settings)[1] for v in vectors if v in AMPLIFICATION_SOURCE_PORTS)
    return _rules(specs, destination)
