"""The safety validators every planned action passes before anything is announced, whoever planned it.

They encode what the field learned the hard way: announce only the tenant's verified space, never divert
more specific than upstreams accept, never let a FlowSpec rule touch BGP (TCP port 179) or exceed sane value
ranges (a packet-length match above the MTU once crashed a provider's routers), never block the provider's
never-block list, and never overflow a router's or an upstream's rule table. The planner runs them on its own
output, and the apply path runs them again; each refusal says in words what was wrong.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from collector.sources import WIDEST_SOURCE_BLOCK
from devices.drivers.base import BLACKHOLE_COMMUNITY, FlowSpecRule, UnicastRoute, ValueRange
from mitigation.engine.prefixes import MAX_DIVERSION_LENGTH, Network, network
from mitigation.engine.types import EDGE_TARGET, ActionKind, PlannedAction, PlannedMitigation

TCP = 6
BGP_PORT = 179
_ROUTE_TARGET = re.compile(r"^(\d+|\d+\.\d+\.\d+\.\d+):\d+$")

# Refusal codes: stable, so that callers and tests can decide by code, never by message text.
WRONG_ROUTE_TYPE = "wrong_route_type"
NO_TARGETS = "no_targets"
OUTSIDE_TENANT_SPACE = "outside_tenant_space"
NEVER_BLOCK = "never_block"
DIVERSION_TOO_LONG = "diversion_too_long"
DIVERSION_TOO_SHORT = "diversion_shorter_than_verified"
DIVERSION_BLACKHOLE = "diversion_with_blackhole"
RTBH_COMMUNITY_MISSING = "rtbh_without_blackhole_community"
FLOWSPEC_TOO_BROAD = "flowspec_too_broad"
FLOWSPEC_SOURCE_TOO_BROAD = "flowspec_source_too_broad"
FLOWSPEC_MATCHES_BGP = "flowspec_matches_bgp"
FLOWSPEC_RANGE = "flowspec_value_range"
FLOWSPEC_INCONSISTENT = "flowspec_inconsistent"
RULE_CAP = "rule_cap"
RTBH_TOO_SHORT = "rtbh_too_short"
# Blackholing a whole aggregate drops far more than the attack: RTBH routes are at least this long per family.
RTBH_MIN_LENGTH = {4: 24, 6: 48}


@dataclass(frozen=True)
class Refusal:
    """Why an action may not be applied: a stable code and a message a person can read."""

    code: str
    message: str


class SafetyError(Exception):
    """Raised by `check_action` when an action is refused; carries every refusal."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__("; ".join(r.message for r in refusals))
        self.refusals = tuple(refusals)


@dataclass(frozen=True)
class SafetyLimits:
    """Caps given by the caller: FlowSpec rules per receiver, rules already held, value bounds, breadth.

    `target_caps` maps a receiver ("edge", "peer:<id>") to the rules it may hold; receivers not listed get
    `default_cap`. `rules_in_use` counts the rules each receiver already holds, not counting the action checked.
    `min_flowspec_length` caps a rule's breadth per address family, on top of "no wider than verified space".
    """

    target_caps: Mapping[str, int] = field(default_factory=dict)
    rules_in_use: Mapping[str, int] = field(default_factory=dict)
    default_cap: int = 3000
    max_packet_length: int = 9216
    min_flowspec_length: Mapping[int, int] = field(default_factory=lambda: {4: 16, 6: 32})

    def cap(self, target: str) -> int:
        return self.target_caps.get(target, self.default_cap)


def _inside(prefix: Network, tenant: Sequence[Network]) -> bool:
    return any(p.version == prefix.version and prefix.subnet_of(p) for p in tenant)  # type: ignore[arg-type]


def _space_refusals(prefix: Network, tenant: Sequence[Network], never_block: Iterable[str]) -> list[Refusal]:
    """Inside the tenant's verified space, and clear of the never-block list."""
    refusals = []
    if not _inside(prefix, tenant):
        refusals.append(Refusal(OUTSIDE_TENANT_SPACE, f"{prefix} is not inside a verified prefix of this tenant"))
    for text in never_block:
        blocked = network(text)
        if blocked.version == prefix.version and prefix.overlaps(blocked):
            refusals.append(Refusal(NEVER_BLOCK, f"{prefix} overlaps {blocked}, which must never be blocked"))
    return refusals


def _diversion_refusals(route: UnicastRoute, prefix: Network, tenant: Sequence[Network]) -> list[Refusal]:
    """A diversion is no longer than /24 or /48 (longer is filtered upstream) and no shorter than verified."""
    refusals = []
    limit = MAX_DIVERSION_LENGTH[prefix.version]
    if prefix.prefixlen > limit:
        refusals.append(Refusal(DIVERSION_TOO_LONG, f"diversion {prefix} is longer than /{limit}; upstreams filter it"))
    wider = [p for p in tenant if p.version == prefix.version and p != prefix and p.subnet_of(prefix)]  # type: ignore[arg-type]
    if wider:
        refusals.append(Refusal(DIVERSION_TOO_SHORT,
                                f"diversion {prefix} is shorter than the verified prefix {wider[0]}"))
    if route.is_blackhole:
        refusals.append(Refusal(DIVERSION_BLACKHOLE, f"diversion {prefix} carries the blackhole community"))
    return refusals


def _ranges_refusals(rule: FlowSpecRule, max_packet_length: int) -> list[Refusal]:
    """Every match value inside the range its field can hold, each range low <= high."""
    bounds: dict[str, tuple[tuple[ValueRange, ...], int]] = {
        "protocol": (rule.protocols, 255),
        "destination port": (rule.destination_ports, 65535),
        "source port": (rule.source_ports, 65535),
        "packet length": (rule.packet_lengths, max_packet_length),
        "ICMP type": (rule.icmp_types, 255),
        "ICMP code": (rule.icmp_codes, 255),
    }
    refusals = []
    for name, (ranges, high) in bounds.items():
        for value in ranges:
            ok = (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)
                  and 0 <= value[0] <= value[1] <= high)
            if not ok:
                refusals.append(Refusal(FLOWSPEC_RANGE, f"{name} range {value!r} is not within 0-{high}"))
    if rule.dscp is not None and not 0 <= rule.dscp <= 63:
        refusals.append(Refusal(FLOWSPEC_RANGE, f"DSCP {rule.dscp} is not within 0-63"))
    if rule.rate_bps is not None and rule.rate_bps < 0:
        refusals.append(Refusal(FLOWSPEC_RANGE, f"rate {rule.rate_bps} bps is negative"))
    if rule.redirect_target is not None and not _ROUTE_TARGET.match(rule.redirect_target):
        refusals.append(Refusal(FLOWSPEC_RANGE, f"redirect target {rule.redirect_target!r} is not ASN:NN"))
    return refusals


def _covers(ranges: tuple[ValueRange, ...], value: int) -> bool:
    """Whether a match component admits `value`; an absent component admits everything."""
    return not ranges or any(isinstance(r, tuple) and len(r) == 2 and r[0] <= value <= r[1] for r in ranges)


def matches_bgp(rule: FlowSpecRule) -> bool:
    """Whether the rule could match a BGP packet: TCP with port 179 on either side.

    An absent port component matches every port, so a TCP rule must exclude 179 from both port components;
    a rule whose protocols exclude TCP (a discard of UDP, ICMP, GRE...) can never match BGP.
    """
    could_be_tcp = _covers(rule.protocols, TCP) or bool(rule.tcp_flags)
    return could_be_tcp and (_covers(rule.destination_ports, BGP_PORT) or _covers(rule.source_ports, BGP_PORT))


def _flowspec_refusals(rule: FlowSpecRule, prefix: Network, limits: SafetyLimits) -> list[Refusal]:
    refusals = _ranges_refusals(rule, limits.max_packet_length)
    shortest = limits.min_flowspec_length.get(prefix.version, 0)
    if prefix.prefixlen < shortest:
        refusals.append(Refusal(FLOWSPEC_TOO_BROAD, f"FlowSpec destination {prefix} is wider than /{shortest}"))
    if matches_bgp(rule):
        refusals.append(Refusal(FLOWSPEC_MATCHES_BGP,
                                f"rule {rule.name} could match TCP port 179 (BGP): exclude 179 from both ports"))
    if rule.tcp_flags and not _covers(rule.protocols, TCP):
        refusals.append(Refusal(FLOWSPEC_INCONSISTENT, f"rule {rule.name} matches TCP flags but not TCP"))
    return refusals


def _source_refusals(source: Network, never_block: Iterable[str]) -> list[Refusal]:
    """A rule on attack sources matches no block wider than WIDEST_SOURCE_BLOCK and nothing on the never-block
    list: a resolver of the provider's own, among a reflection attack's "amplifiers", must keep answering."""
    refusals = []
    widest = WIDEST_SOURCE_BLOCK[source.version]
    if source.prefixlen < widest:
        refusals.append(Refusal(FLOWSPEC_SOURCE_TOO_BROAD, f"FlowSpec source {source} is wider than /{widest}"))
    for text in never_block:
        blocked = network(text)
        if blocked.version == source.version and source.overlaps(blocked):
            refusals.append(Refusal(NEVER_BLOCK, f"source {source} overlaps {blocked}, which must never be blocked"))
    return refusals


def _cap_refusals(targets: Sequence[str], limits: SafetyLimits) -> list[Refusal]:
    in_use, caps, default = limits.rules_in_use, limits.target_caps, limits.default_cap
    full = [t for t in targets if in_use.get(t, 0) >= caps.get(t, default)]
    return [Refusal(RULE_CAP, f"{t} already holds {in_use.get(t, 0)} of its {limits.cap(t)} rules") for t in full]


def validate_action(
    action: PlannedAction, *, tenant_prefixes: Sequence[str], never_block: Sequence[str], limits: SafetyLimits
) -> list[Refusal]:
    """Every reason `action` may not be applied for the tenant owning `tenant_prefixes`; empty means safe."""
    route = action.route
    tenant = [network(p) for p in tenant_prefixes]
    refusals = [] if action.targets else [Refusal(NO_TARGETS, "the action names no receiver")]
    if action.kind == ActionKind.FLOWSPEC:
        if not isinstance(route, FlowSpecRule):
            return [*refusals, Refusal(WRONG_ROUTE_TYPE, "a FlowSpec action must carry a FlowSpec rule")]
        prefix = network(route.destination)
        refusals += _space_refusals(prefix, tenant, never_block)
        refusals += _flowspec_refusals(route, prefix, limits)
        if route.source is not None:
            refusals += _source_refusals(network(route.source), never_block)
        return refusals + _cap_refusals(action.targets, limits)
    if not isinstance(route, UnicastRoute):
        return [*refusals, Refusal(WRONG_ROUTE_TYPE, f"a {action.kind} action must carry a unicast route")]
    prefix = network(route.prefix)
    refusals += _space_refusals(prefix, tenant, never_block)
    if action.kind == ActionKind.DIVERSION:
        refusals += _diversion_refusals(route, prefix, tenant)
    else:
        if BLACKHOLE_COMMUNITY not in route.communities:
            refusals.append(Refusal(RTBH_COMMUNITY_MISSING, f"RTBH route {prefix} lacks {BLACKHOLE_COMMUNITY}"))
        if prefix.prefixlen < RTBH_MIN_LENGTH[prefix.version]:
            refusals.append(Refusal(RTBH_TOO_SHORT, f"RTBH route {prefix} is shorter than "
                                                    f"/{RTBH_MIN_LENGTH[prefix.version]}"))
    return refusals


def check_action(
    action: PlannedAction, *, tenant_prefixes: Sequence[str], never_block: Sequence[str], limits: SafetyLimits
) -> None:
    """Like `validate_action`, but raise SafetyError: for apply paths that must stop on any refusal."""
    refusals = validate_action(action, tenant_prefixes=tenant_prefixes, never_block=never_block, limits=limits)
    if refusals:
        raise SafetyError(refusals)


class RuleCounter:
    """Validates actions one after another, counting the FlowSpec rules accepted so far against the caps."""

    def __init__(self, never_block: Sequence[str], limits: SafetyLimits) -> None:
        self.never_block = tuple(never_block)
        self.limits = limits
        self.in_use: dict[str, int] = defaultdict(int, limits.rules_in_use)

    def check(self, action: PlannedAction, tenant_prefixes: Sequence[str]) -> list[Refusal]:
        limits = SafetyLimits(self.limits.target_caps, self.in_use, self.limits.default_cap,
                              self.limits.max_packet_length, self.limits.min_flowspec_length)
        refusals = validate_action(action, tenant_prefixes=tenant_prefixes, never_block=self.never_block,
                                   limits=limits)
        if not refusals and action.kind == ActionKind.FLOWSPEC:
            for target in action.targets:
                self.in_use[target] += 1
        return refusals


def validate_plan(
    mitigations: Iterable[PlannedMitigation], *, tenant_prefixes: Mapping[int, Sequence[str]],
    never_block: Sequence[str], limits: SafetyLimits,
) -> list[tuple[int, PlannedAction, Refusal]]:
    """Every refusal across a whole plan, as (attack id, action, refusal), counting rules across attacks."""
    counter = RuleCounter(never_block, limits)
    found = []
    for mitigation in mitigations:
        prefixes = tenant_prefixes.get(mitigation.tenant_id, ())
        for action in mitigation.actions:
            found += [(mitigation.attack_id, action, r) for r in counter.check(action, prefixes)]
    return found


__all__ = [
    "EDGE_TARGET", "Refusal", "RuleCounter", "SafetyError", "SafetyLimits", "check_action", "matches_bgp",
    "validate_action", "validate_plan",
]
