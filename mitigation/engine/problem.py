"""The planning problem as numbers: every attack's options, their costs and the centers' capacities.

This module defines the cost function once. The planner (`assign.py`) and the benchmark's exact ILP both read
the same `Problem`, so the gap the benchmark reports measures the search, not two different objectives.

An option is an integer: `0..C-1` diverts the attack to that center, then `flowspec`, `rtbh` and `none`
(unmitigated) follow. The cost of a plan is the sum of each attack's option cost plus, for each center, a
convex penalty on utilisation above `hot_utilisation` caused by the plan (load balance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mitigation.engine.filters import FilterQuality, attack_quality
from mitigation.engine.prefixes import (
    DiversionPrefix,
    Network,
    covering,
    diversion_prefix,
    network,
    overlapping,
    remember,
)
from mitigation.engine.types import (
    REALTIME_PROFILES,
    ActionKind,
    EngineSettings,
    Level,
    LiveAttack,
    NetworkSnapshot,
    PolicyInput,
    PreviousPlan,
    ScrubbingCenterState,
)

# Why a center cannot take an attack, in the order the checks run; 0 means it can.
CENTER_OK, NOT_ALLOWED, UNHEALTHY, NO_UPSTREAM, NO_NEXT_HOP, NO_LATENCY, TOO_FAR, NO_HEADROOM = range(8)
# Why a center cannot take an attack, in the words the decision's reason and the pages use.
STATUS_WORDS = {
    NOT_ALLOWED: "diversion not possible for this attack",
    UNHEALTHY: "unhealthy or its data too old",
    NO_UPSTREAM: "no healthy upstream to announce through",
    NO_NEXT_HOP: "no next hop for this address family",
    NO_LATENCY: "no latency measurement to the tenant",
    TOO_FAR: "latency over the tenant's threshold",
    NO_HEADROOM: "not enough headroom",
}


@dataclass
class AttackContext:
    """What the planner worked out about one attack before pricing it: prefixes, filters, and blockers."""

    attack: LiveAttack
    policy: PolicyInput | None
    target: Network
    target_text: str
    verified: Network | None
    diversion: DiversionPrefix | None
    via_redirect: bool
    quality: FilterQuality
    previous: PreviousPlan | None
    hold_active: bool
    notes: list[str]

    @property
    def family(self) -> int:
        return self.target.version


@dataclass
class CenterFacts:
    """Per-center arrays: physical capacity, load without the attacks being replanned, usable headroom."""

    cap_g: np.ndarray
    cap_p: np.ndarray
    base_g: np.ndarray
    base_p: np.ndarray
    head_g: np.ndarray
    head_p: np.ndarray
    usable: np.ndarray
    upstream_ok: np.ndarray
    upstream_health: np.ndarray


@dataclass
class Problem:
    """Everything the search needs: `cost[a, o]` (inf when infeasible), demands, and center facts."""

    centers: tuple[ScrubbingCenterState, ...]
    contexts: list[AttackContext]
    cost: np.ndarray
    status: np.ndarray
    latency: np.ndarray
    threshold: np.ndarray
    gbps: np.ndarray
    mpps: np.ndarray
    facts: CenterFacts
    settings: EngineSettings

    @property
    def n_centers(self) -> int:
        return len(self.centers)

    @property
    def flowspec(self) -> int:
        return self.n_centers

    @property
    def rtbh(self) -> int:
        return self.n_centers + 1

    @property
    def none(self) -> int:
        return self.n_centers + 2

    def level_of(self, option: int) -> Level:
        if option < self.n_centers:
            return Level.DIVERSION
        return (Level.FLOWSPEC, Level.RTBH, Level.NONE)[option - self.n_centers]

    def hot(self, center: int, load_g: float, load_p: float) -> float:
        """The load-balance penalty for a center at the given added load (convex, zero at no added load)."""
        f = self.facts
        h = self.settings.hot_utilisation
        bg, bp, cg, cp = f.base_g[center], f.base_p[center], f.cap_g[center], f.cap_p[center]
        over_g = max(0.0, (bg + load_g) / cg - h) - max(0.0, bg / cg - h)
        over_p = max(0.0, (bp + load_p) / cp - h) - max(0.0, bp / cp - h)
        return 100.0 * self.settings.hot_weight * float(over_g + over_p)

    def total_cost(self, assignment: Sequence[int]) -> float:
        """The objective: option costs plus the load-balance penalties of the centers."""
        total = 0.0
        added_g = np.zeros(self.n_centers)
        added_p = np.zeros(self.n_centers)
        for a, option in enumerate(assignment):
            total += float(self.cost[a, option])
            if option < self.n_centers:
                added_g[option] += self.gbps[a]
                added_p[option] += self.mpps[a]
        return total + sum(self.hot(c, added_g[c], added_p[c]) for c in range(self.n_centers))


def _center_facts(
    snapshot: NetworkSnapshot, attacks: Sequence[LiveAttack], previous: Mapping[int, PreviousPlan],
    settings: EngineSettings, committed: Mapping[int, tuple[float, float]] | None = None,
) -> CenterFacts:
    """Headroom each center really offers: reserve kept, stale figures discounted, upstream capacity counted.

    The reported load already contains attacks the previous plan diverted there, so they are taken out first:
    otherwise keeping an attack where it is would count it twice. `committed` is what diversions planned outside
    this plan hold at each center (gbps, mpps by center id): a report may or may not include them yet, so they
    are taken out with the others and added back whole.
    """
    centers = snapshot.centers
    index = {c.id: i for i, c in enumerate(centers)}
    cap_g = np.array([max(c.capacity_gbps, 1e-9) for c in centers], dtype=float)
    cap_p = np.array([max(c.capacity_mpps, 1e-9) for c in centers], dtype=float)
    base_g = np.array([c.load_gbps for c in centers], dtype=float)
    base_p = np.array([c.load_mpps for c in centers], dtype=float)
    for attack in attacks:
        prev = previous.get(attack.id)
        if prev is not None and prev.level == Level.DIVERSION and prev.center_id in index:
            base_g[index[prev.center_id]] -= attack.gbps
            base_p[index[prev.center_id]] -= attack.mpps
    held_g, held_p = np.zeros(len(centers)), np.zeros(len(centers))
    for center_id, (gbps, mpps) in (committed or {}).items():
        if center_id in index:
            held_g[index[center_id]] += gbps
            held_p[index[center_id]] += mpps
    base_g = np.maximum(base_g - held_g, 0.0) + held_g
    base_p = np.maximum(base_p - held_p, 0.0) + held_p
    trust = np.array([settings.stale_headroom_factor if c.stale else 1.0 for c in centers])
    head_g = np.maximum(cap_g * (1 - settings.headroom_reserve) - base_g, 0.0) * trust
    head_p = np.maximum(cap_p * (1 - settings.headroom_reserve) - base_p, 0.0) * trust
    up_head = np.zeros(len(centers))
    up_total = np.zeros(len(centers))
    for peer in snapshot.peers:
        i = index.get(peer.center_id)
        if i is None:
            continue
        up_total[i] += peer.capacity_gbps
        # Stale figures are discounted as a center's are, not taken for zero: a poll that comes late under load
        # must not make every diversion through that upstream look impossible (and replan them all at once).
        if peer.session_up and peer.utilisation < settings.upstream_saturation:
            trust_peer = settings.stale_headroom_factor if peer.stale else 1.0
            up_head[i] += peer.capacity_gbps * (settings.upstream_saturation - peer.utilisation) * trust_peer
    head_g = np.minimum(head_g, up_head)
    usable = np.array([c.healthy and c.data_age_s <= settings.max_data_age_s for c in centers], dtype=bool)
    health = np.divide(up_head, up_total * settings.upstream_saturation, out=np.zeros(len(centers)),
                       where=up_total > 0)
    return CenterFacts(cap_g, cap_p, base_g, base_p, head_g, head_p, usable, up_head > 0, np.clip(health, 0, 1))


def _context(
    attack: LiveAttack, policy: PolicyInput | None, never_block: Sequence[str], previous: PreviousPlan | None,
    snapshot: NetworkSnapshot, settings: EngineSettings,
) -> AttackContext:
    """Prefixes, filters and blockers of one attack: everything that does not depend on the center."""
    target = network(attack.target)
    notes: list[str] = []
    verified = covering(target, policy.verified_prefixes) if policy is not None else None
    diversion: DiversionPrefix | None = None
    via_redirect = False
    quality = FilterQuality.NONE
    if policy is None:
        notes.append("no policy for this tenant: nothing may be announced")
    elif verified is None:
        notes.append(f"target {target} is outside the tenant's verified prefixes: nothing may be announced")
    elif overlapping(target, never_block):
        notes.append(f"target {target} overlaps the never-block list: nothing may be announced")
        verified = None
    else:
        diversion = diversion_prefix(target, verified)
        if diversion.prefix is not None and overlapping(network(diversion.prefix), never_block):
            diversion = DiversionPrefix(None, f"diverting {diversion.prefix} would cover never-block space")
        if diversion.problem:
            notes.append(diversion.problem)
            via_redirect = policy.allows(ActionKind.FLOWSPEC)
            notes.append("falling back to FlowSpec redirect to a center's VRF" if via_redirect
                         else "FlowSpec is not allowed either, so no diversion")
        quality = attack_quality(attack.vectors, policy.profile, settings)
    hold = previous is not None and (
        (snapshot.taken_at - previous.since).total_seconds() < settings.deescalate_hold_s
    )
    return AttackContext(attack, policy, target, remember(target), verified, diversion, via_redirect, quality, previous,
                         hold, notes)


def _level_penalty(ctx: AttackContext, level: Level, settings: EngineSettings) -> float:
    """Escalate fast (free), de-escalate slowly (a penalty, and a much larger one during the hold-down)."""
    prev = ctx.previous
    if prev is None or prev.level.rank <= level.rank:
        return 0.0
    return settings.deescalate_penalty + (settings.deescalate_hold_penalty if ctx.hold_active else 0.0)


def _other_costs(ctx: AttackContext, settings: EngineSettings) -> tuple[float, float, float]:
    """The costs of FlowSpec only, RTBH and no mitigation for one attack (inf where not possible)."""
    inf = float("inf")
    policy = ctx.policy
    if policy is None or ctx.verified is None:
        return inf, inf, settings.unmitigated_cost
    realtime = policy.profile in REALTIME_PROFILES
    flowspec = inf
    if policy.allows(ActionKind.FLOWSPEC) and ctx.attack.gbps <= settings.flowspec_only_max_gbps:
        if ctx.quality == FilterQuality.EXACT:
            flowspec = settings.flowspec_exact_realtime if realtime else settings.flowspec_exact
        elif ctx.quality == FilterQuality.PARTIAL:
            flowspec = settings.flowspec_partial_realtime if realtime else settings.flowspec_partial
        flowspec += _level_penalty(ctx, Level.FLOWSPEC, settings)
    rtbh = settings.rtbh_cost if policy.allows(ActionKind.RTBH) else inf
    return flowspec, rtbh, settings.unmitigated_cost + _level_penalty(ctx, Level.NONE, settings)


def build_problem(
    snapshot: NetworkSnapshot, attacks: Sequence[LiveAttack], policies: Mapping[int, PolicyInput],
    previous: Mapping[int, PreviousPlan], never_block: Sequence[str], settings: EngineSettings,
    committed: Mapping[int, tuple[float, float]] | None = None,
) -> Problem:
    """Price every option of every attack; infeasible options cost inf and carry a status saying why."""
    centers = snapshot.centers
    n_c, n_a = len(centers), len(attacks)
    facts = _center_facts(snapshot, attacks, previous, settings, committed)
    contexts = [_context(a, policies.get(a.tenant_id), never_block, previous.get(a.id), snapshot, settings)
                for a in attacks]
    tenant_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for policy in policies.values():
        lat = np.array([policy.latency_ms.get(c.id, np.nan) for c in centers], dtype=float)
        thr = np.array([policy.threshold_for(c) for c in centers], dtype=float)
        tenant_rows[policy.tenant_id] = (lat, thr)
    missing = (np.full(n_c, np.nan), np.full(n_c, 1.0))
    latency = np.array([tenant_rows.get(a.tenant_id, missing)[0] for a in attacks]).reshape(n_a, n_c)
    threshold = np.array([tenant_rows.get(a.tenant_id, missing)[1] for a in attacks]).reshape(n_a, n_c)
    gbps = np.array([a.gbps for a in attacks], dtype=float)
    mpps = np.array([a.mpps for a in attacks], dtype=float)
    index = {c.id: i for i, c in enumerate(centers)}

    divert_ok = np.array([ctx.verified is not None and ctx.policy is not None
                          and ctx.policy.allows(ActionKind.DIVERSION)
                          and (ctx.via_redirect or (ctx.diversion is not None and ctx.diversion.prefix is not None))
                          for ctx in contexts], dtype=bool)
    redirect = np.array([ctx.via_redirect for ctx in contexts], dtype=bool)
    v6 = np.array([ctx.family == 6 for ctx in contexts], dtype=bool)
    has_nh4 = np.array([c.next_hop_v4 is not None for c in centers], dtype=bool)
    has_nh6 = np.array([c.next_hop_v6 is not None for c in centers], dtype=bool)
    has_rt = np.array([bool(c.redirect_target) for c in centers], dtype=bool)
    reachable = np.where(redirect[:, None], has_rt[None, :], np.where(v6[:, None], has_nh6[None, :], has_nh4[None, :]))
    with np.errstate(invalid="ignore"):
        too_far = ~(latency <= threshold)
    status = np.select(
        [~divert_ok[:, None] | np.zeros((n_a, n_c), dtype=bool), ~facts.usable[None, :] | np.zeros((n_a, n_c), bool),
         ~facts.upstream_ok[None, :] & ~redirect[:, None], ~reachable, np.isnan(latency), too_far,
         (gbps[:, None] > facts.head_g[None, :]) | (mpps[:, None] > facts.head_p[None, :])],
        [NOT_ALLOWED, UNHEALTHY, NO_UPSTREAM, NO_NEXT_HOP, NO_LATENCY, TOO_FAR, NO_HEADROOM], default=CENTER_OK,
    ).astype(np.int8)

    realtime = np.array([ctx.policy is not None and ctx.policy.profile in REALTIME_PROFILES for ctx in contexts])
    stale = np.array([c.stale for c in centers], dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        divert = (settings.divert_base + settings.latency_weight * np.nan_to_num(latency / threshold)
                  + realtime[:, None] * settings.realtime_ms_weight * np.nan_to_num(latency)
                  + stale[None, :] * settings.stale_penalty
                  + (1 - facts.upstream_health[None, :]) * settings.upstream_penalty
                  + redirect[:, None] * settings.redirect_penalty)
    for a, ctx in enumerate(contexts):
        prev = ctx.previous
        if prev is None:
            continue
        if prev.level == Level.DIVERSION and prev.center_id in index:
            moved = np.ones(n_c, dtype=bool)
            moved[index[prev.center_id]] = False
            divert[a] += moved * settings.move_penalty
        divert[a] += _level_penalty(ctx, Level.DIVERSION, settings)
    cost = np.empty((n_a, n_c + 3))
    cost[:, :n_c] = np.where(status == CENTER_OK, divert, np.inf)
    cost[:, n_c:] = np.array([_other_costs(ctx, settings) for ctx in contexts]).reshape(n_a, 3)
    return Problem(tuple(centers), contexts, cost, status, latency, threshold, gbps, mpps, facts, settings)


@dataclass
class SharedPrefixGroups:
    """Attacks that must share one decision: their diversion prefixes overlap, and one prefix can only lead to one
    center (announced towards two, BGP would split both attacks' traffic between them, whatever the plan says).

    `problem` has one row per group: option costs and demands summed over the members, so a center takes the
    group only if it has room for all of it. `members[g]` are the attacks of group g in the original problem.
    """

    problem: Problem
    members: list[list[int]]

    def expand(self, assignment: Sequence[int]) -> list[int]:
        """Each attack's option from its group's."""
        out = [0] * sum(len(m) for m in self.members)
        for option, members in zip(assignment, self.members, strict=True):
            for a in members:
                out[a] = option
        return out

    def partners(self, attack: int) -> list[int]:
        """The other attacks planned together with `attack` (indexes in the original problem)."""
        for members in self.members:
            if attack in members:
                return [a for a in members if a != attack]
        return []


def group_by_diversion_prefix(problem: Problem) -> SharedPrefixGroups:
    """Group attacks whose diversion prefixes overlap (a sweep over the prefixes in address order)."""
    announced = sorted(
        (ctx.family, int(net.network_address), int(net.broadcast_address), a)
        for a, ctx in enumerate(problem.contexts)
        if ctx.diversion is not None and ctx.diversion.prefix is not None and not ctx.via_redirect
        for net in (network(ctx.diversion.prefix),)
    )
    group_of = list(range(len(problem.contexts)))
    family, end, leader = None, -1, -1
    for fam, first, last, a in announced:
        if fam == family and first <= end:
            group_of[a] = leader
            end = max(end, last)
        else:
            family, end, leader = fam, last, a
    if all(g == a for a, g in enumerate(group_of)):
        return SharedPrefixGroups(problem, [[a] for a in range(len(group_of))])
    by_leader: dict[int, list[int]] = {}
    for a, g in enumerate(group_of):
        by_leader.setdefault(g, []).append(a)
    members = list(by_leader.values())
    leaders = [m[0] for m in members]
    grouped = Problem(
        problem.centers, [problem.contexts[a] for a in leaders],
        np.stack([problem.cost[m].sum(axis=0) for m in members]),
        np.stack([problem.status[m].max(axis=0) for m in members]),
        problem.latency[leaders], problem.threshold[leaders],
        np.array([problem.gbps[m].sum() for m in members]), np.array([problem.mpps[m].sum() for m in members]),
        problem.facts, problem.settings,
    )  # fmt: skip
    return SharedPrefixGroups(grouped, members)
