"""Turn a chosen option into routes: FlowSpec rules, per-upstream diversion announcements, RTBH routes.

Each action names its receivers and says why, so the SOC can read what will be announced where. Rule budgets
(edge routers and each upstream's FlowSpec limit) are spent here, across all attacks of the plan.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence

from collector.sources import WIDEST_SOURCE_BLOCK, addresses_covered, aggregate_sources, collapse_networks
from devices.drivers.base import BLACKHOLE_COMMUNITY, FlowSpecRule, UnicastRoute
from mitigation.engine.filters import PORTS_BUT_BGP, TCP, amplification_filters, attack_filters
from mitigation.engine.problem import AttackContext
from mitigation.engine.types import (
    EDGE_TARGET,
    ActionKind,
    AppProfile,
    EngineSettings,
    Level,
    PlannedAction,
    ScrubbingCenterState,
    UpstreamPeerState,
)


class RuleBudget:
    """FlowSpec rules left per receiver: edge routers share one cap, each upstream has its own limit."""

    def __init__(self, peers: Sequence[UpstreamPeerState], settings: EngineSettings,
                 in_use: Mapping[str, int] | None = None) -> None:
        self.caps: dict[str, int] = {EDGE_TARGET: settings.edge_rule_cap}
        for peer in peers:
            self.caps[peer.target] = peer.flowspec_rule_limit if peer.flowspec_accepted else 0
        self.used: dict[str, int] = defaultdict(int, in_use or {})
        self._filtering = [(p.target, _peer_label(p)) for p in peers
                           if p.flowspec_accepted and p.session_up and self.left(p.target) > 0]

    def upstreams_with_room(self) -> list[tuple[str, str]]:
        """(target, label) of up upstreams that accept FlowSpec and can still take a rule.

        Exhausted upstreams are dropped for good: the budget only ever shrinks during a plan.
        """
        if any(self.left(target) < 1 for target, _ in self._filtering):
            self._filtering = [(t, label) for t, label in self._filtering if self.left(t) > 0]
        return self._filtering

    def left(self, target: str) -> int:
        return self.caps.get(target, 0) - self.used[target]

    def spend(self, targets: Sequence[str]) -> None:
        for target in targets:
            self.used[target] += 1


def _peer_label(peer: UpstreamPeerState) -> str:
    return f"{peer.isp} (AS{peer.asn})"


def _upstream_names(labels: Sequence[str], shown: int = 4) -> str:
    if not labels:
        return ""
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f" and {len(labels)} upstreams ({', '.join(labels[:shown])}{more})"


def flowspec_actions(
    rules: Sequence[FlowSpecRule], budget: RuleBudget, why: str, notes: list[str], *, upstreams: bool = True
) -> list[PlannedAction]:
    """Each rule to the edge routers and to every up upstream that accepts FlowSpec and has room for it.

    Dropping at the upstream saves our own links; the edge always gets the rule so that it holds even when an
    upstream ignores it. A rule the edge has no room for is left out and said so.
    """
    actions = []
    for rule in rules:
        if budget.left(EDGE_TARGET) < 1:
            notes.append(f"edge routers are at their FlowSpec rule cap: rule {rule.name} left out")
            continue
        receivers = budget.upstreams_with_room() if upstreams else []
        targets = (EDGE_TARGET, *(target for target, _ in receivers))
        budget.spend(targets)
        where = "edge routers" + _upstream_names([label for _, label in receivers])
        actions.append(PlannedAction(ActionKind.FLOWSPEC, rule, targets, f"{why}: {rule.action} on {where}"))
    return actions


def match_sources(
    rules: Sequence[FlowSpecRule], ctx: AttackContext, budget: RuleBudget, settings: EngineSettings, notes: list[str]
) -> tuple[FlowSpecRule, ...]:
    """The rules restricted to the attack's sources when a few carry it (reflection from a handful of amplifiers),
    each rule once per source block; the rest of the target's traffic of that kind then passes.

    Blocks are the sources aggregated as narrowly as the edge routers' rule budget allows (at most
    `settings.source_blocks_max` per rule); sources that would need a block wider than a /16 (IPv6: /32) keep the
    rules on the destination alone. Either way the reason says so.
    """
    sources = [ipaddress.ip_network(s, strict=False) for s in ctx.attack.source_blocks]
    sources = [s for s in sources if s.version == ctx.family]
    if not rules or not sources:
        return tuple(rules)
    room = min(settings.source_blocks_max, budget.left(EDGE_TARGET) // len(rules))
    blocks = aggregate_sources(sources, room) if room >= 1 else None
    if blocks is None:
        notes.append(f"the attack comes from {len(sources)} sources, but they cannot be matched within the FlowSpec "
                     f"rule budget ({room} source blocks per rule, none wider than /{WIDEST_SOURCE_BLOCK[ctx.family]}):"
                     " rules match the destination only")
        return tuple(rules)
    shown = ", ".join(str(b) for b in blocks[:4]) + (f" and {len(blocks) - 4} more" if len(blocks) > 4 else "")
    how = "exactly" if addresses_covered(blocks) == addresses_covered(collapse_networks(sources)) else "aggregated"
    notes.append(f"the attack comes from few sources ({len(sources)}): FlowSpec rules match them, {how} into "
                 f"{len(blocks)} block{'s' if len(blocks) > 1 else ''} ({shown}) within the rule budget "
                 f"(at most {room} per rule)")
    return tuple(dataclasses.replace(rule, source=str(block)) for rule in rules for block in blocks)


def redirect_rules(destination: str, center: ScrubbingCenterState) -> tuple[FlowSpecRule, ...]:
    """Redirect everything to `destination` into the center's VRF except BGP (TCP port 179 either way)."""
    target = center.redirect_target or ""
    return (
        FlowSpecRule(destination, "redirect", protocols=((0, TCP - 1), (TCP + 1, 255)), redirect_target=target),
        FlowSpecRule(destination, "redirect", protocols=((TCP, TCP),), destination_ports=PORTS_BUT_BGP,
                     source_ports=PORTS_BUT_BGP, redirect_target=target),
    )


def diversion_actions(
    ctx: AttackContext, center: ScrubbingCenterState, peers: Sequence[UpstreamPeerState],
    settings: EngineSettings, notes: list[str],
) -> list[PlannedAction]:
    """Announce the diversion prefix through the center's upstreams: plainly through healthy unsaturated ones,
    with AS-path prepends (and the ISP's prepend community when it honours one) through saturated or stale ones,
    so that traffic prefers the upstreams with room. Sessions that are down get nothing.
    """
    assert ctx.diversion is not None and ctx.diversion.prefix is not None
    prefix = ctx.diversion.prefix
    next_hop = center.next_hop_v6 if ctx.family == 6 else center.next_hop_v4
    assert next_hop is not None
    healthy, steered = [], []
    for peer in peers:
        if not peer.session_up:
            notes.append(f"{_peer_label(peer)} at {center.name}: session down, not announced")
        elif peer.stale or peer.utilisation >= settings.upstream_saturation:
            steered.append(peer)
        else:
            healthy.append(peer)
    actions = []
    if healthy:
        route = UnicastRoute(prefix, next_hop, neighbors=tuple(p.neighbor_address for p in healthy))
        names = ", ".join(_peer_label(p) for p in healthy)
        actions.append(PlannedAction(ActionKind.DIVERSION, route, tuple(p.target for p in healthy),
                                     f"divert {prefix} to {center.name} via {names}"))
    for peer in steered:
        communities = (peer.prepend_community,) if peer.prepend_community else ()
        route = UnicastRoute(prefix, next_hop, communities=communities, as_path_prepend=settings.prepend_count,
                             neighbors=(peer.neighbor_address,))
        state = "data stale" if peer.stale else f"{peer.utilisation:.0%} utilised"
        how = f"prepend x{settings.prepend_count}" + (f" and {peer.prepend_community}" if communities else "")
        actions.append(PlannedAction(ActionKind.DIVERSION, route, (peer.target,),
                                     f"divert {prefix} via {_peer_label(peer)} with {how}: {state}"))
    return actions


def rtbh_actions(
    ctx: AttackContext, peers: Sequence[UpstreamPeerState], settings: EngineSettings
) -> list[PlannedAction]:
    """Blackhole the target at the edge and at every up upstream, with the ISP's own blackhole community."""
    prefix = ctx.target_text
    next_hop = settings.rtbh_next_hop_v6 if ctx.family == 6 else settings.rtbh_next_hop_v4
    actions = [PlannedAction(ActionKind.RTBH, UnicastRoute(prefix, next_hop, communities=(BLACKHOLE_COMMUNITY,)),
                             (EDGE_TARGET,), f"blackhole {prefix} at the edge routers")]
    groups: dict[str, list[UpstreamPeerState]] = defaultdict(list)
    for peer in peers:
        if peer.session_up:
            groups[peer.blackhole_community or ""].append(peer)
    for community, members in sorted(groups.items()):
        communities = (BLACKHOLE_COMMUNITY, community) if community else (BLACKHOLE_COMMUNITY,)
        route = UnicastRoute(prefix, next_hop, communities=communities,
                             neighbors=tuple(p.neighbor_address for p in members))
        names = ", ".join(_peer_label(p) for p in members)
        actions.append(PlannedAction(ActionKind.RTBH, route, tuple(p.target for p in members),
                                     f"blackhole {prefix} upstream at {names}"))
    return actions


def build_actions(
    ctx: AttackContext, level: Level, center: ScrubbingCenterState | None,
    peers_by_center: Mapping[int, Sequence[UpstreamPeerState]], all_peers: Sequence[UpstreamPeerState],
    budget: RuleBudget, settings: EngineSettings, notes: list[str],
) -> list[PlannedAction]:
    """The actions for one attack at the chosen level (and center, for a diversion)."""
    if level == Level.FLOWSPEC and ctx.policy is not None:
        rules = attack_filters(ctx.attack.vectors, ctx.policy.profile, ctx.target_text, ctx.family, settings)
        return flowspec_actions(match_sources(rules, ctx, budget, settings, notes), budget, "filter at the edge", notes)
    if level == Level.RTBH:
        return rtbh_actions(ctx, all_peers, settings)
    if level != Level.DIVERSION or center is None or ctx.policy is None:
        return []
    actions: list[PlannedAction] = []
    if ctx.via_redirect:
        actions += flowspec_actions(redirect_rules(ctx.target_text, center), budget,
                                    f"redirect to {center.name}'s VRF", notes, upstreams=False)
    else:
        actions += diversion_actions(ctx, center, peers_by_center.get(center.id, ()), settings, notes)
    if ctx.policy.profile == AppProfile.DNS and ctx.policy.allows(ActionKind.FLOWSPEC):
        rules = amplification_filters(ctx.attack.vectors, ctx.policy.profile, ctx.target_text, ctx.family, settings)
        actions += flowspec_actions(match_sources(rules, ctx, budget, settings, notes), budget,
                                    "drop reflected traffic before the DNS service", notes)
    return actions
