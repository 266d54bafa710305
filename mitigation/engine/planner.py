"""`plan_mitigations`: all live attacks planned together, each decision explained, every action validated.

Planning them together is the point: centers are shared, so one attack's choice changes another's options.
The cost function lives in `problem.py`, the search in `assign.py`, the routes in `actions.py`; this module
ties them together, writes the reasons a person reads, and drops (and reports) any action the safety
validators refuse, so that nothing unsafe leaves the engine.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

import mitigation.safety as safety
from mitigation.engine.actions import RuleBudget, build_actions
from mitigation.engine.assign import solve
from mitigation.engine.problem import (
    NO_HEADROOM,
    STATUS_WORDS,
    TOO_FAR,
    AttackContext,
    Problem,
    build_problem,
    group_by_diversion_prefix,
)
from mitigation.engine.types import (
    CenterLoad,
    EngineSettings,
    Level,
    LiveAttack,
    NetworkSnapshot,
    PlannedAction,
    PlannedMitigation,
    PlanResult,
    PolicyInput,
    PreviousPlan,
    UpstreamPeerState,
)

_CANDIDATES_SHOWN = 4


def _candidate_views(problem: Problem, a: int, shown: list[int]) -> list[dict[str, object]]:
    """The compared centers with the figures the decision used, JSON-able (inf and NaN become None)."""
    cost, status = problem.cost[a].tolist(), problem.status[a].tolist()
    latency, threshold = problem.latency[a].tolist(), problem.threshold[a].tolist()
    head_g, head_p = problem.facts.head_g, problem.facts.head_p
    views = []
    for c in shown:
        center = problem.centers[c]
        views.append({
            "center": center.id, "name": center.name, "status": status[c], "stale": center.stale,
            "headroom_gbps": float(head_g[c]), "headroom_mpps": float(head_p[c]),
            "latency_ms": None if latency[c] != latency[c] else latency[c], "threshold_ms": threshold[c],
            "cost": None if cost[c] == float("inf") else cost[c],
        })
    return views


def _center_line(view: dict[str, object], gbps: float, mpps: float) -> str:
    """One center as a person compares them: headroom and latency, or why it cannot take the attack."""
    status, name = view["status"], view["name"]
    if status == NO_HEADROOM:
        return (f"{name}: over capacity (needs {gbps:.1f} Gbps / {mpps:.1f} Mpps, "
                f"{view['headroom_gbps']:.1f} Gbps / {view['headroom_mpps']:.1f} Mpps free)")
    if status == TOO_FAR:
        return f"{name}: {view['latency_ms']:.0f} ms is over the {view['threshold_ms']:.0f} ms threshold"
    if status in STATUS_WORDS:
        return f"{name}: {STATUS_WORDS[status]}"
    stale = ", load data stale" if view["stale"] else ""
    return (f"{name}: {view['headroom_gbps']:.0f} Gbps headroom, {view['latency_ms']:.0f} ms against a "
            f"{view['threshold_ms']:.0f} ms threshold{stale} (cost {view['cost']:.1f})")


def _candidates(problem: Problem, ranked: list[int], chosen: int) -> list[int]:
    """The chosen center first, then the cheapest others, then a few that could not take it."""
    shown = [chosen] if chosen < problem.n_centers else []
    shown += [c for c in ranked if c != chosen][: _CANDIDATES_SHOWN - len(shown)]
    return shown


def _reason(problem: Problem, a: int, option: int, views: list[dict[str, object]], notes: list[str]) -> str:
    ctx = problem.contexts[a]
    level = problem.level_of(option)
    centers = "; ".join(_center_line(v, ctx.attack.gbps, ctx.attack.mpps) for v in views)
    if level == Level.DIVERSION:
        center = problem.centers[option]
        head = f"divert to {center.name}"
        prev = ctx.previous
        if prev is not None and prev.level == Level.DIVERSION and prev.center_id == center.id:
            head += " (kept: previous center, a move must gain more than the move penalty)"
        elif prev is not None and prev.level == Level.DIVERSION:
            head += " (moved: the previous center is worse by more than the move penalty or cannot take it)"
    elif level == Level.FLOWSPEC:
        head = f"FlowSpec at the edge ({ctx.quality.name.lower()} filters for the {_profile(ctx)} profile)"
    elif level == Level.RTBH:
        head = "RTBH as last resort: no center can take it, and FlowSpec cannot filter it or is not allowed"
    else:
        head = "no mitigation possible"
    parts = [head]
    if centers:
        parts.append(centers)
    parts += notes
    return ". ".join(parts)


def _profile(ctx: AttackContext) -> str:
    return ctx.policy.profile.value if ctx.policy is not None else "unknown"


def _inputs(problem: Problem, a: int, views: list[dict[str, object]]) -> dict[str, object]:
    """The inputs of the decision, JSON-able, so a person (or an audit row) can replay the reasoning."""
    ctx = problem.contexts[a]
    attack = ctx.attack
    tail = problem.cost[a, problem.n_centers:].tolist()
    others = {name: (None if value == float("inf") else value)
              for name, value in zip(("flowspec", "rtbh", "none"), tail, strict=True)}
    prev = ctx.previous
    return {
        "attack": {"id": attack.id, "target": ctx.target_text, "vectors": [str(v) for v in attack.vectors],
                   "gbps": round(attack.gbps, 3), "mpps": round(attack.mpps, 3)},
        "tenant": ctx.policy.slug if ctx.policy is not None else None,
        "profile": _profile(ctx),
        "verified_prefix": str(ctx.verified) if ctx.verified is not None else None,
        "diversion_prefix": ctx.diversion.prefix if ctx.diversion is not None else None,
        "filter_quality": ctx.quality.name.lower(),
        "previous": None if prev is None else {"level": prev.level.value, "center": prev.center_id,
                                                "since": prev.since.isoformat()},
        "candidates": views,
        "option_costs": others,
    }


def _as_mapping(items: Mapping[int, object] | Iterable[object] | None, key: str) -> dict[int, object]:
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    return {getattr(item, key): item for item in items}


def plan_mitigations(
    snapshot: NetworkSnapshot,
    attacks: Sequence[LiveAttack],
    policies: Mapping[int, PolicyInput] | Iterable[PolicyInput],
    previous: Mapping[int, PreviousPlan] | Iterable[PreviousPlan] | None = None,
    *,
    never_block: Sequence[str] = (),
    settings: EngineSettings | None = None,
    rules_in_use: Mapping[str, int] | None = None,
    committed: Mapping[int, tuple[float, float]] | None = None,
) -> PlanResult:
    """Plan every live attack at once and return explained, validated mitigations.

    `policies` and `previous` may be mappings by tenant id / attack id or plain iterables. `rules_in_use` counts
    FlowSpec rules receivers already hold outside this plan, and `committed` the load (gbps, mpps by center id)
    that diversions outside this plan hold: a plan of some attacks fits them around the others, which keep their
    places. Pure: no I/O, no clock (time comes from the snapshot), so the same inputs always give the same plan.
    """
    with _collection_paused():
        return _plan(snapshot, attacks, policies, previous, never_block, settings or EngineSettings(), rules_in_use,
                     committed)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while planning, and restore its previous state.

    A plan allocates tens of thousands of short-lived, acyclic objects (routes, reasons, dicts); a full
    collection triggered in the middle costs tens of milliseconds and frees nothing that reference counting
    would not. Pausing it keeps planning time flat; collection resumes as soon as the plan is built.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _plan(
    snapshot: NetworkSnapshot, attacks: Sequence[LiveAttack],
    policies: Mapping[int, PolicyInput] | Iterable[PolicyInput],
    previous: Mapping[int, PreviousPlan] | Iterable[PreviousPlan] | None, never_block: Sequence[str],
    settings: EngineSettings, rules_in_use: Mapping[str, int] | None,
    committed: Mapping[int, tuple[float, float]] | None,
) -> PlanResult:
    policy_map: dict[int, PolicyInput] = _as_mapping(policies, "tenant_id")  # type: ignore[assignment]
    previous_map: dict[int, PreviousPlan] = _as_mapping(previous, "attack_id")  # type: ignore[assignment]
    problem = build_problem(snapshot, attacks, policy_map, previous_map, never_block, settings, committed)
    groups = group_by_diversion_prefix(problem)
    assignment = groups.expand(solve(groups.problem))

    peers_by_center: dict[int, list[UpstreamPeerState]] = defaultdict(list)
    for peer in snapshot.peers:
        peers_by_center[peer.center_id].append(peer)
    budget = RuleBudget(snapshot.peers, settings, rules_in_use)
    counter = safety.RuleCounter(never_block, safety.SafetyLimits(
        target_caps=dict(budget.caps), rules_in_use=dict(rules_in_use or {}), default_cap=0))
    mitigations = []
    ranked = np.lexsort((problem.status, problem.cost[:, :problem.n_centers]), axis=1)[:, :_CANDIDATES_SHOWN + 1]
    for a, option in enumerate(assignment):
        ctx = problem.contexts[a]
        level = problem.level_of(option)
        center = problem.centers[option] if level == Level.DIVERSION else None
        notes = list(ctx.notes)
        partners = groups.partners(a)
        if partners:
            others = ", ".join(f"attack {problem.contexts[b].attack.id} on {problem.contexts[b].target_text}"
                               for b in partners)  # fmt: skip
            together = sum(problem.contexts[b].attack.gbps for b in (a, *partners))
            notes.append(f"planned together with {others}: they share the diversion prefix "
                         f"{ctx.diversion.prefix if ctx.diversion else '?'}, which can lead to one center only "
                         f"({together:.0f} Gbps together)")
        views = _candidate_views(problem, a, _candidates(problem, ranked[a].tolist(), option))
        actions = build_actions(ctx, level, center, peers_by_center, snapshot.peers, budget, settings, notes)
        prefixes = ctx.policy.verified_prefixes if ctx.policy is not None else ()
        kept: list[PlannedAction] = []
        for action in actions:
            refusals = counter.check(action, prefixes)
            if refusals:
                notes.append("refused by safety: " + "; ".join(r.message for r in refusals))
            else:
                kept.append(action)
        if not kept and level != Level.NONE:
            notes.append(f"nothing left to announce at level {level.value}: no mitigation")
            level, center = Level.NONE, None
        mitigations.append(PlannedMitigation(
            attack_id=ctx.attack.id, tenant_id=ctx.attack.tenant_id, center_id=center.id if center else None,
            level=level, actions=tuple(kept), reason=_reason(problem, a, option, views, notes),
            inputs=_inputs(problem, a, views), cost=float(problem.cost[a, option]),
        ))
    return PlanResult(tuple(mitigations), _center_loads(problem, mitigations), problem.total_cost(assignment))


def _center_loads(problem: Problem, mitigations: Sequence[PlannedMitigation]) -> dict[int, CenterLoad]:
    f = problem.facts
    load_g, load_p = f.base_g.copy(), f.base_p.copy()
    count = [0] * problem.n_centers
    index = {c.id: i for i, c in enumerate(problem.centers)}
    for a, mitigation in enumerate(mitigations):
        if mitigation.center_id is not None:
            c = index[mitigation.center_id]
            load_g[c] += problem.gbps[a]
            load_p[c] += problem.mpps[a]
            count[c] += 1
    return {
        center.id: CenterLoad(center.id, center.name, float(load_g[c]), float(load_p[c]), center.capacity_gbps,
                              center.capacity_mpps, count[c])
        for c, center in enumerate(problem.centers)
    }
