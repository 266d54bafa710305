"""Planning: every live attack planned together by the engine, the result stored with its reasons.

The engine is pure; this module loads its inputs from the public schema, runs the safety validators once more
against the database's own view (nothing bypasses them), and turns the plan into Decisions and Actions.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from collector.signals import AttackVector
from core.actors import CLOSED_LOOP, ENGINE, Actor
from core.events import publish
from core.redis import redis_client
from devices.models import ScrubbingCenter
from devices.selectors import tenant_latencies
from mitigation import jobs, safety
from mitigation.choices import ActionStatusChoices, MitigationStateChoices
from mitigation.engine import plan_mitigations
from mitigation.engine.prefixes import MAX_DIVERSION_LENGTH
from mitigation.engine.types import (
    ActionKind,
    AppProfile,
    Level,
    LiveAttack,
    NetworkSnapshot,
    PlannedAction,
    PlannedMitigation,
    PolicyInput,
    PreviousPlan,
)
from mitigation.models import Action, ControlSwitch, Decision, Mitigation, NeverBlockPrefix
from mitigation.routes import route_key, route_to_spec
from mitigation.services import states
from mitigation.services.states import mitigation_event
from mitigation.snapshot import network_snapshot
from tenants.customer.choices import AutomationModeChoices
from tenants.models import TenantPolicy as PolicyRow
from tenants.models import VerifiedPrefix
from tenants.notifications import notify_on_commit

PLANNABLE_STATES = (
    MitigationStateChoices.DETECTED,
    MitigationStateChoices.PLANNED,
    MitigationStateChoices.AWAITING_APPROVAL,
    MitigationStateChoices.APPLYING,
    MitigationStateChoices.ACTIVE,
)
PLANNING_LOCK = 71_170_001
PLANNING_LOCK_TIMEOUT_S = 30
OVERRIDE_THRESHOLD_MS = 10_000.0


@dataclass(frozen=True)
class PlanningSummary:
    planned: int
    changed: int
    refused: int


def load_policies(tenant_ids: Iterable[int]) -> dict[int, PolicyInput]:
    """The engine's view of each tenant: verified space, thresholds (center and region overrides), latencies."""
    ids = set(tenant_ids)
    prefixes: dict[int, list[str]] = defaultdict(list)
    for tenant_id, prefix in VerifiedPrefix.objects.filter(tenant_id__in=ids).values_list("tenant_id", "prefix"):
        prefixes[tenant_id].append(str(prefix))
    centers = dict(ScrubbingCenter.objects.values_list("slug", "id"))
    latencies = tenant_latencies()
    policies = {}
    for row in PolicyRow.objects.filter(tenant_id__in=ids).select_related("tenant"):
        center_thresholds: dict[int, float] = {}
        region_thresholds: dict[str, float] = {}
        for scope, value in (row.latency_overrides or {}).items():
            kind, _, name = scope.partition(":")
            if kind == "center" and name in centers:
                center_thresholds[centers[name]] = float(value)
            elif kind == "region":
                region_thresholds[name] = float(value)
        policies[row.tenant_id] = PolicyInput(
            tenant_id=row.tenant_id,
            slug=row.tenant.slug,
            verified_prefixes=tuple(prefixes.get(row.tenant_id, ())),
            latency_threshold_ms=float(row.latency_threshold_ms),
            center_thresholds_ms=center_thresholds,
            region_thresholds_ms=region_thresholds,
            latency_ms=latencies.get(row.tenant_id, {}),
            profile=AppProfile(row.application_profile),
            allowed_actions=frozenset(ActionKind(a) for a in row.allowed_actions),
        )
    return policies


def _engine_tenant(mitigation: Mitigation) -> int:
    """Mitigations under an operator override are planned under their own narrowed copy of the tenant's policy."""
    return -mitigation.pk if mitigation.override_center_id or mitigation.override_level else mitigation.tenant_id


def _override_policies(mitigations: list[Mitigation], policies: dict[int, PolicyInput]) -> dict[int, PolicyInput]:
    """An override narrows the policy for one attack: only the chosen center, or only the chosen level's action.

    The operator's choice of center stands in for the latency threshold there; the safety validators and the
    tenant's verified space are unchanged.
    """
    narrowed = {}
    for mitigation in mitigations:
        base = policies.get(mitigation.tenant_id)
        if base is None or _engine_tenant(mitigation) == mitigation.tenant_id:
            continue
        changes: dict[str, object] = {"tenant_id": -mitigation.pk}
        if mitigation.override_center_id:
            center = mitigation.override_center_id
            changes["latency_ms"] = {center: base.latency_ms.get(center, 0.0)}
            changes["center_thresholds_ms"] = {center: OVERRIDE_THRESHOLD_MS}
        if mitigation.override_level in {ActionKind.FLOWSPEC, ActionKind.DIVERSION, ActionKind.RTBH}:
            changes["allowed_actions"] = frozenset({ActionKind(mitigation.override_level)})
        narrowed[-mitigation.pk] = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    return narrowed


def never_block_list() -> tuple[str, ...]:
    return tuple(str(p) for p in NeverBlockPrefix.objects.values_list("prefix", flat=True))


def plan_attacks(*, full: bool = True, now: datetime.datetime | None = None,
                 acting_user: Actor = ENGINE) -> PlanningSummary:
    """Plan live mitigations and store what changed. Serialised across workers by an advisory lock.

    `full` plans every live mitigation together. Otherwise only those that asked for it (new ones, and those
    marked `replan`) are planned, with every mitigation they may share a diversion prefix with; the others keep
    their places, and the load and FlowSpec rules they hold are counted. A change of the network (a center's or
    upstream's health, an element out of service, capacities) since the last run makes it a full run.
    Side effects after commit: live events per changed mitigation, and a network convergence job.
    """
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Bounded: a planner stuck elsewhere holds this run up for at most the lock timeout, then this run
            # fails (its job retries, and the reconcile loop plans anything left) instead of queueing forever.
            cursor.execute(f"SET LOCAL lock_timeout = '{PLANNING_LOCK_TIMEOUT_S}s'")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PLANNING_LOCK])
            cursor.execute("SET LOCAL lock_timeout = 0")
        if ControlSwitch.current().panic:
            return PlanningSummary(0, 0, 0)
        snapshot = network_snapshot(now=now)
        full = _network_changed(snapshot) or full
        scope = None if full else _incremental_scope()
        if scope is not None and not scope:
            return PlanningSummary(0, 0, 0)
        # Locked while planned: a withdraw, rejection or panic committed meanwhile waits for this run, then finds
        # its mitigation as this run left it (and this run never writes over what it did not read).
        mitigations = states.locked(scope, state__in=PLANNABLE_STATES)
        if not mitigations:
            return PlanningSummary(0, 0, 0)
        held = _held_elsewhere(mitigations) if scope is not None else _Held({}, {})
        policies = load_policies(m.tenant_id for m in mitigations)
        engine_policies = {**policies, **_override_policies(mitigations, policies)}
        attacks = [
            LiveAttack(
                id=m.attack_id, tenant_id=_engine_tenant(m), target=str(m.attack.target),
                vectors=tuple(AttackVector(v) for v in m.attack.vectors if v in AttackVector.__members__.values()),
                bps=m.attack.bps, pps=m.attack.pps, top_sources=tuple(m.attack.top_sources),
            )
            for m in mitigations
        ]
        previous = [
            PreviousPlan(m.attack_id, Level(m.level), m.center_id, m.level_since)
            for m in mitigations
            if m.level != Level.NONE
        ]
        never_block = never_block_list()
        result = plan_mitigations(snapshot, attacks, engine_policies, previous, never_block=never_block,
                                  rules_in_use=held.rules, committed=held.load)
        by_attack = {m.attack_id: m for m in mitigations}
        rows = PolicyRow.objects.filter(tenant_id__in=policies)
        modes = {tenant: (mode, window) for tenant, mode, window
                 in rows.values_list("tenant_id", "automation_mode", "approval_window_minutes")}
        current: dict[int, dict[str, Action]] = defaultdict(dict)
        for action in Action.objects.filter(mitigation__in=mitigations, status=ActionStatusChoices.DESIRED):
            current[action.mitigation_id][action.route_key] = action
        writes = _PlanWrites(states.Transitions(acting_user, now))
        changed = refused = 0
        for planned in result.mitigations:
            mitigation = by_attack[planned.attack_id]
            delta = _store_plan(mitigation, planned, current[mitigation.pk], policies.get(mitigation.tenant_id),
                                modes.get(mitigation.tenant_id), never_block, now, acting_user, writes)
            changed += delta[0]
            refused += delta[1]
        writes.flush(now)
        Mitigation.objects.filter(pk__in=[m.pk for m in mitigations], replan=True).update(replan=False)
        if changed:
            _schedule_convergence([a.pk for a in writes.actions if a.status == ActionStatusChoices.DESIRED])
        return PlanningSummary(len(result.mitigations), changed, refused)


# How many rounds of "who shares a diversion prefix with these" an incremental run follows before it plans
# everything instead (each round is one query; chains of overlapping prefixes are short in practice).
SCOPE_ROUNDS = 4


def _incremental_scope() -> list[int] | None:
    """The mitigations an incremental run plans: those that asked, and every live one whose diversion prefix may
    overlap one of theirs (planned together, since such prefixes can lead to one center only). None: plan all."""
    live = Mitigation.objects.filter(state__in=PLANNABLE_STATES)
    found = dict(live.filter(Q(state=MitigationStateChoices.DETECTED) | Q(replan=True))
                 .values_list("pk", "attack__target"))
    scope = set(found)
    for _ in range(SCOPE_ROUNDS):
        spans = {_diversion_span(target) for target in found.values()}
        if not spans:
            return sorted(scope)
        overlap = Q()
        for span in spans:
            overlap |= Q(attack__target__net_overlaps=span)
        found = dict(live.filter(overlap).exclude(pk__in=scope).values_list("pk", "attack__target"))
        scope.update(found)
    return None


def _diversion_span(target: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The widest prefix a diversion for `target` can announce (see engine.prefixes.diversion_prefix)."""
    limit = MAX_DIVERSION_LENGTH[target.version]
    return str(target.supernet(new_prefix=limit) if target.prefixlen > limit else target)


@dataclass(frozen=True)
class _Held:
    load: dict[int, tuple[float, float]]
    rules: dict[str, int]


def _held_elsewhere(planned: list[Mitigation]) -> _Held:
    """What the live mitigations outside this run hold: diverted load per center (Gbps, Mpps) and FlowSpec rules
    per receiver, so that the planned ones are fitted around them."""
    others = Mitigation.objects.filter(state__in=PLANNABLE_STATES).exclude(pk__in=[m.pk for m in planned])
    load = {
        row["center_id"]: (row["bps"] / 1e9, row["pps"] / 1e6)
        for row in others.filter(level=Level.DIVERSION, center__isnull=False).values("center_id")
        .annotate(bps=Sum("attack__bps"), pps=Sum("attack__pps"))
    }
    rules: Counter[str] = Counter()
    flowspec = Action.objects.filter(status=ActionStatusChoices.DESIRED, kind=ActionKind.FLOWSPEC,
                                     mitigation__in=others)
    for targets in flowspec.values_list("targets", flat=True):
        rules.update(targets)
    return _Held(load, dict(rules))


_NETWORK_KEY = "sluice:plan:network"


def _network_changed(snapshot: NetworkSnapshot) -> bool:
    """Whether what the plan depends on in the network (not the load figures) changed since the last run.

    Health, capacity, next hops of centers; session, capacity and FlowSpec limits of upstreams (an element out
    of service shows here as a down upstream or an unhealthy center). Loads drift all the time, and figures go
    stale and fresh again whenever a poll comes late: the reconcile loop's periodic full run takes them in (a
    stale flag in here made a late telemetry poll under load replan 1,000 mitigations at once, twice).
    When Redis cannot say, the run is full.
    """
    facts = repr((
        [(c.id, c.healthy, c.capacity_gbps, c.capacity_mpps, c.next_hop_v4, c.next_hop_v6, c.redirect_target, c.vrf)
         for c in snapshot.centers],
        [(p.id, p.center_id, p.session_up, p.capacity_gbps, p.flowspec_accepted, p.flowspec_rule_limit)
         for p in snapshot.peers],
    ))
    digest = hashlib.sha1(facts.encode()).hexdigest()
    try:
        before = redis_client().set(_NETWORK_KEY, digest, get=True)
    except (redis.RedisError, OSError):
        return True
    return (before.decode() if isinstance(before, bytes) else before) != digest


def _validated(
    planned: PlannedAction, policy: PolicyInput | None, never_block: tuple[str, ...]
) -> list[safety.Refusal]:
    """The validators once more, with the registry's own prefixes: the engine's word is not taken for it."""
    prefixes = policy.verified_prefixes if policy else ()
    return safety.validate_action(
        planned, tenant_prefixes=prefixes, never_block=never_block, limits=safety.SafetyLimits()
    )


@dataclass
class _PlanWrites:
    """Rows a planning run writes, gathered so that a burst of attacks costs a few bulk statements, not N each."""

    transitions: states.Transitions
    decisions: list[Decision] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    mitigations: list[Mitigation] = field(default_factory=list)

    def flush(self, now: datetime.datetime) -> None:
        Decision.objects.bulk_create(self.decisions)
        Action.objects.bulk_create(self.actions)
        if self.retired:
            Action.objects.filter(pk__in=self.retired).update(status=ActionStatusChoices.RETIRED, retired_at=now)
        for mitigation in self.mitigations:
            mitigation.updated_at = now
        Mitigation.objects.bulk_update(self.mitigations, fields=_PLANNED_FIELDS)
        for mitigation in self.mitigations:  # a new decision, whether or not the state changed with it
            publish("mitigation.planned", mitigation_event(mitigation), tenant_schema=mitigation.tenant.schema_name)
        self.transitions.record()


_PLANNED_FIELDS = ["level", "level_since", "center", "reason", "state", "approved_by", "approval_deadline", "updated_at"]


def _store_plan(
    mitigation: Mitigation,
    planned: PlannedMitigation,
    current: dict[str, Action],
    policy: PolicyInput | None,
    mode: tuple[str, int] | None,
    never_block: tuple[str, ...],
    now: datetime.datetime,
    acting_user: Actor,
    writes: _PlanWrites,
) -> tuple[int, int]:
    wanted = {route_key(a.route): a for a in planned.actions}
    same = (
        set(current) == set(wanted)
        and mitigation.level == planned.level
        and mitigation.center_id == planned.center_id
        and mitigation.state != MitigationStateChoices.DETECTED
    )
    if same:
        return 0, 0
    if _escalation_impossible(mitigation, planned, current):
        return _keep_plan(mitigation, planned, writes, acting_user)
    reason = planned.reason
    if mitigation.override_center_id or mitigation.override_level:
        reason = f"Operator override by {mitigation.override_by}. {reason}"
    writes.decisions.append(Decision(
        mitigation=mitigation, level=planned.level, center_id=planned.center_id, reason=reason,
        inputs=planned.inputs, cost=planned.cost if planned.cost != float("inf") else 0.0, actor=str(acting_user),
    ))
    refused = 0
    writes.retired.extend(action.pk for key, action in current.items() if key not in wanted)
    for key, planned_action in wanted.items():
        if key in current:
            continue
        refusals = _validated(planned_action, policy, never_block)
        refused += bool(refusals)
        writes.actions.append(Action(
            mitigation=mitigation, kind=planned_action.kind, spec=route_to_spec(planned_action.route), route_key=key,
            targets=list(planned_action.targets), reason=planned_action.reason,
            status=ActionStatusChoices.REFUSED if refusals else ActionStatusChoices.DESIRED,
            refusal_code=refusals[0].code if refusals else "",
            refusal_reason="; ".join(r.message for r in refusals),
        ))
    if mitigation.level != planned.level:
        mitigation.level_since = now
    mitigation.level, mitigation.center_id, mitigation.reason = planned.level, planned.center_id, reason
    _advance_after_plan(mitigation, planned, mode, now, writes.transitions)
    writes.mitigations.append(mitigation)
    return 1, refused


def _escalation_impossible(mitigation: Mitigation, planned: PlannedMitigation, current: dict[str, Action]) -> bool:
    """The closed loop asked for the next level up and the engine cannot make it (a never-block entry in the way,
    no center with room): the attack is better held back by what it has than by nothing at all."""
    return (mitigation.override_by == str(CLOSED_LOOP) and planned.level == Level.NONE
            and mitigation.level != Level.NONE and bool(current))


def _keep_plan(mitigation: Mitigation, planned: PlannedMitigation, writes: _PlanWrites,
               acting_user: Actor) -> tuple[int, int]:
    """Keep the mitigation's current routes and say why once (a decision row, the reason the pages show)."""
    reason = (f"Escalation to {mitigation.override_level} by the closed loop is not possible, so "
              f"{mitigation.level} stays. {planned.reason}")
    if mitigation.reason == reason:
        return 0, 0
    writes.decisions.append(Decision(mitigation=mitigation, level=mitigation.level, center_id=mitigation.center_id,
                                     reason=reason, inputs=planned.inputs, cost=0.0, actor=str(acting_user)))
    mitigation.reason = reason
    writes.mitigations.append(mitigation)
    return 0, 0


def _advance_after_plan(
    mitigation: Mitigation, planned: PlannedMitigation, mode_and_window: tuple[str, int] | None,
    now: datetime.datetime, transitions: states.Transitions,
) -> None:
    """Move the lifecycle on after a new plan, by the tenant's automation mode (approval is per mitigation)."""
    state = mitigation.state
    reason = "a new plan"
    if state in {MitigationStateChoices.ACTIVE, MitigationStateChoices.APPLYING}:
        transitions.move(mitigation, MitigationStateChoices.APPLYING, action="mitigation.replan", reason=reason)
        return
    if state == MitigationStateChoices.AWAITING_APPROVAL:
        return
    if planned.level == Level.NONE:
        transitions.move(mitigation, MitigationStateChoices.PLANNED, action="mitigation.plan",
                         reason="nothing to announce")
        return
    mode, window = mode_and_window or (AutomationModeChoices.AUTOMATIC, 5)
    if mode == AutomationModeChoices.AUTOMATIC:
        transitions.move(mitigation, MitigationStateChoices.APPLYING, action="mitigation.plan",
                         reason="automatic mode")
        mitigation.approved_by = "engine (automatic)"
        return
    transitions.move(mitigation, MitigationStateChoices.AWAITING_APPROVAL, action="mitigation.plan",
                     reason=f"{mode}: an approval is needed")
    if mode == AutomationModeChoices.AUTO_UNLESS_REJECTED:
        mitigation.approval_deadline = now + datetime.timedelta(minutes=window)
    publish("mitigation.approval_needed", {"mitigation": mitigation.pk, "target": str(mitigation.attack.target),
            "deadline": mitigation.approval_deadline}, tenant_schema=mitigation.tenant.schema_name)
    notify_on_commit(mitigation.tenant, "approval_needed", {"mitigation": mitigation.pk, "deadline":
                     mitigation.approval_deadline, "target": str(mitigation.attack.target)})


def _schedule_convergence(new_actions: list[int]) -> None:
    """After commit: the speakers announce the new routes at once, then a convergence job does the rest."""
    from mitigation.services.network import announce_ahead

    jobs.converge_after_commit(announce_first=lambda: announce_ahead(new_actions))

